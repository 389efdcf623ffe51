import type { MergedView } from '../ollama-api/merged-views';
import type { ManagementCall } from '../ollama-api/model-management';

/** How the balancer treats each Ollama / OpenAI route. */
export type RouteKind =
  | 'model' // a body naming a model: routed to one backend that has it
  | 'push' // routed like a model call (one backend), but model management
  | 'show' // metadata from one backend holding the model: no slot, no queue
  | MergedView // answered from the whole fleet's merged answers
  | ManagementCall // fanned out to every (or every named) backend
  | 'preflight' // CORS OPTIONS: answered by a backend, so Ollama's own OLLAMA_ORIGINS applies
  | 'not-found'
  | 'method-not-allowed';

/** The kinds a route of the table can have (the rest come from the method or a miss). */
type TableKind = Exclude<RouteKind, 'preflight' | 'not-found' | 'method-not-allowed'>;

interface Route {
  /** The path, or with `prefix` every path under it. */
  path: string;
  prefix?: boolean;
  kind: TableKind;
  methods: readonly string[];
  /** The metric label (default: the path). Never a free-form path: no client picks a label. */
  label?: string;
  /** Changes what the backends hold (MODEL_MANAGEMENT applies). */
  management?: boolean;
}

const READ = ['GET', 'HEAD'] as const;
const POST = ['POST'] as const;

/**
 * Every route the balancer knows, once: classification, the Allow header of a 405, the metric
 * labels and which calls are model management all come from this table.
 */
const ROUTES: readonly Route[] = [
  { path: '/', kind: 'root', methods: READ },
  { path: '/api/generate', kind: 'model', methods: POST },
  { path: '/api/chat', kind: 'model', methods: POST },
  { path: '/api/embed', kind: 'model', methods: POST },
  { path: '/api/embeddings', kind: 'model', methods: POST },
  { path: '/api/show', kind: 'show', methods: POST },
  { path: '/api/version', kind: 'version', methods: READ },
  { path: '/api/tags', kind: 'tags', methods: READ },
  { path: '/api/ps', kind: 'ps', methods: READ },
  { path: '/api/status', kind: 'status', methods: READ },
  { path: '/api/pull', kind: 'pull', methods: POST, management: true },
  { path: '/api/push', kind: 'push', methods: POST, management: true },
  { path: '/api/delete', kind: 'delete', methods: ['DELETE'], management: true },
  { path: '/api/copy', kind: 'copy', methods: POST, management: true },
  { path: '/api/create', kind: 'create', methods: POST, management: true },
  {
    path: '/api/blobs/',
    prefix: true,
    kind: 'blobs',
    methods: ['HEAD', 'POST'],
    label: '/api/blobs/:digest',
    management: true,
  },
  { path: '/v1/chat/completions', kind: 'model', methods: POST },
  { path: '/v1/completions', kind: 'model', methods: POST },
  { path: '/v1/embeddings', kind: 'model', methods: POST },
  { path: '/v1/responses', kind: 'model', methods: POST },
  { path: '/v1/messages', kind: 'model', methods: POST },
  { path: '/v1/models', kind: 'v1-models', methods: READ },
  { path: '/v1/models/', prefix: true, kind: 'v1-model', methods: READ, label: '/v1/models/:model' },
];

const EXACT = new Map(ROUTES.filter((r) => !r.prefix).map((r) => [r.path, r]));
const PREFIXED = ROUTES.filter((r) => r.prefix);

function routeOf(path: string): Route | undefined {
  const exact = EXACT.get(path);
  if (exact !== undefined) return exact;
  for (const r of PREFIXED) if (path.startsWith(r.path)) return r;
  return undefined;
}

export function classifyRoute(method: string, path: string): RouteKind {
  if (method === 'OPTIONS') return 'preflight';
  const r = routeOf(path);
  if (r === undefined) return 'not-found';
  return r.methods.includes(method) ? r.kind : 'method-not-allowed';
}

/** The Allow header for a known path. */
export function allowFor(path: string): string {
  return routeOf(path)?.methods.join(', ') ?? 'GET, HEAD';
}

/** The route's metric label: a fixed set, anything else is "other". */
export function routeLabel(path: string): string {
  const r = routeOf(path);
  return r === undefined ? 'other' : (r.label ?? r.path);
}

/** Routes that change what the backends hold. */
export const MANAGEMENT_KINDS: ReadonlySet<RouteKind> = new Set(ROUTES.filter((r) => r.management).map((r) => r.kind));

/** Paths the proxy fast path owns; everything else goes to Nest's controllers. */
export function isProxyPath(path: string): boolean {
  return path === '/' || path.startsWith('/api/') || path.startsWith('/v1/') || path === '/api' || path === '/v1';
}
