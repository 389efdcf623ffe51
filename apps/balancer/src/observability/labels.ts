/**
 * Bounded label values for the balancer's metrics: a fixed set of routes, a capped set of models.
 * No request id, prompt, key or free-form path ever becomes a label.
 */

/** Ollama's and OpenAI's routes as the balancer knows them; anything else is "other". */
const KNOWN_ROUTES = new Set([
  '/',
  '/api/generate',
  '/api/chat',
  '/api/embed',
  '/api/embeddings',
  '/api/show',
  '/api/version',
  '/api/tags',
  '/api/ps',
  '/api/pull',
  '/api/push',
  '/api/delete',
  '/api/copy',
  '/api/create',
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/responses',
  '/v1/messages',
  '/v1/models',
]);

export function routeLabel(path: string): string {
  if (KNOWN_ROUTES.has(path)) return path;
  if (path.startsWith('/v1/models/')) return '/v1/models/:model';
  if (path.startsWith('/api/blobs/')) return '/api/blobs/:digest';
  return 'other';
}

/** Remembers up to `max` model names; later names share the label "other". */
export class ModelLabels {
  private readonly seen = new Set<string>();
  constructor(private readonly max = 100) {}

  label(model: string | null): string {
    if (model === null || model === '') return 'none';
    if (this.seen.has(model)) return model;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(model);
    return model;
  }
}
