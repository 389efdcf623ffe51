/**
 * Bounded label values for the balancer's metrics: a fixed set of routes, a capped set of models.
 * No request id, prompt, key or free-form path ever becomes a label.
 */

/** The route label comes from the one route table (`/v1/models/:model`, `/api/blobs/:digest`, else "other"). */
export { routeLabel } from '../proxy/route-table';

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
