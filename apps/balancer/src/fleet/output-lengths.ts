import { Injectable } from '@nestjs/common';
import { OutputLengthLearner } from './learners';

/** Models whose output length is remembered; past this the least recently answered is forgotten. */
export const MAX_OUTPUT_LENGTH_MODELS = 1024;

/**
 * The usual output length of each model, fleet-wide: how long a model's answers run belongs to the
 * model and its traffic, not to the backend that served them. A request's num_predict / max_tokens
 * is an upper bound; what routing expects is that bound scaled by how much of it the model's
 * answers use (OutputLengthLearner). Bounded: a model gets a learner only once a backend answered
 * it well (never from a name a client merely sent), and at most MAX_OUTPUT_LENGTH_MODELS are kept.
 */
@Injectable()
export class OutputLengths {
  private readonly byModel = new Map<string, OutputLengthLearner>();

  /** Output tokens to expect from a request for `model` with this bound (null: none); null when nothing is known. */
  expected(model: string, bound: number | null): number | null {
    const l = this.byModel.get(model);
    return l === undefined ? bound : l.expected(bound);
  }

  /** A backend answered a request for `model` (bound: what it asked for at most) with `evalCount` tokens. */
  observe(model: string, evalCount: number | undefined, bound: number | null): void {
    if (evalCount === undefined || !(evalCount >= 0)) return;
    let l = this.byModel.get(model);
    if (l !== undefined) {
      // Most recently answered last: the first in the map is the one to forget.
      this.byModel.delete(model);
    } else {
      if (this.byModel.size >= MAX_OUTPUT_LENGTH_MODELS) this.byModel.delete(this.byModel.keys().next().value!);
      l = new OutputLengthLearner();
    }
    this.byModel.set(model, l);
    l.observe(evalCount, bound);
  }

  /** Models it knows, in name order, with their usual output tokens (rounded). */
  usual(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const m of [...this.byModel.keys()].sort()) {
      const u = this.byModel.get(m)!.usual;
      if (u !== null) out[m] = Math.round(u);
    }
    return out;
  }

  get size(): number {
    return this.byModel.size;
  }
}
