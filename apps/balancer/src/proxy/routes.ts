/** How the balancer treats each Ollama / OpenAI route. */
export type RouteKind =
  | 'model' // a body naming a model: routed to one backend that has it
  | 'root'
  | 'version'
  | 'tags'
  | 'ps'
  | 'v1-models'
  | 'v1-model'
  | 'pull'
  | 'delete'
  | 'copy'
  | 'create'
  | 'push'
  | 'blobs'
  | 'preflight' // CORS OPTIONS: answered by a backend, so Ollama's own OLLAMA_ORIGINS applies
  | 'not-found'
  | 'method-not-allowed';

/** The fleet-wide reads the balancer answers itself from its backends' merged answers. */
export type ReadRouteKind = Extract<RouteKind, 'root' | 'version' | 'tags' | 'ps' | 'v1-models' | 'v1-model'>;
/** The model-management calls fanned out to every (or every named) backend. `push` is routed like a model call. */
export type FanOutRouteKind = Extract<RouteKind, 'pull' | 'delete' | 'copy' | 'create' | 'blobs'>;

const MODEL_POST = new Set([
  '/api/generate',
  '/api/chat',
  '/api/embed',
  '/api/embeddings',
  '/api/show',
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/responses',
  '/v1/messages',
]);

export function classifyRoute(method: string, path: string): RouteKind {
  if (method === 'OPTIONS') return 'preflight';
  if (MODEL_POST.has(path)) return method === 'POST' ? 'model' : 'method-not-allowed';
  const read = method === 'GET' || method === 'HEAD';
  switch (path) {
    case '/':
      return read ? 'root' : 'method-not-allowed';
    case '/api/version':
      return read ? 'version' : 'method-not-allowed';
    case '/api/tags':
      return read ? 'tags' : 'method-not-allowed';
    case '/api/ps':
      return read ? 'ps' : 'method-not-allowed';
    case '/v1/models':
      return read ? 'v1-models' : 'method-not-allowed';
    case '/api/pull':
      return method === 'POST' ? 'pull' : 'method-not-allowed';
    case '/api/delete':
      return method === 'DELETE' ? 'delete' : 'method-not-allowed';
    case '/api/copy':
      return method === 'POST' ? 'copy' : 'method-not-allowed';
    case '/api/create':
      return method === 'POST' ? 'create' : 'method-not-allowed';
    case '/api/push':
      return method === 'POST' ? 'push' : 'method-not-allowed';
  }
  if (path.startsWith('/v1/models/')) return read ? 'v1-model' : 'method-not-allowed';
  if (path.startsWith('/api/blobs/')) return method === 'HEAD' || method === 'POST' ? 'blobs' : 'method-not-allowed';
  return 'not-found';
}

/** Paths the proxy fast path owns; everything else goes to Nest's controllers. */
export function isProxyPath(path: string): boolean {
  return path === '/' || path.startsWith('/api/') || path.startsWith('/v1/') || path === '/api' || path === '/v1';
}
