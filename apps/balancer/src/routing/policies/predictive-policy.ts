import type { Backend } from '../../registry/backend';
import { Pick, PolicyContext, RouteRequest, RoutingPolicy } from './policy';

/** Until a backend has shown its speed, assume a request takes this long... */
export const DEFAULT_SERVICE_MS = 3000;
/** ...and a model loads at about 1 GB/s (2 s for a 2 GB model). */
export const DEFAULT_LOAD_MS_PER_BYTE = 1 / 1_000_000;
/** Loading a model of unknown size is assumed to take this long. */
export const DEFAULT_LOAD_MS = 3000;
/** A model used this recently is still "hot": evicting it will likely cost someone a reload. */
const RECENT_USE_MS = 60_000;

export interface Prediction {
  totalMs: number;
  waitMs: number;
  loadMs: number;
  evictMs: number;
  warm: boolean;
}

/**
 * Predicts, per candidate, the time until this request's first token:
 *   queue wait (requests ahead of it for that model, over the backend's parallel slots, times the
 *   learned service time) + the model's load time if it is cold there (size x learned load speed)
 *   + the cost of evicting another model (waiting for it to go idle if every resident model is
 *   busy, and a share of its reload time if it was used recently)
 * and takes the smallest. Waiting for a warm server wins when that is faster; loading elsewhere
 * wins when the warm ones are backed up.
 */
export class PredictivePolicy implements RoutingPolicy {
  readonly name = 'predictive';
  readonly weighsWaiting = true;
  private turn = 0;

  pick(candidates: readonly Backend[], req: RouteRequest, ctx: PolicyContext): Pick {
    let best: Backend = candidates[0];
    let bestP: Prediction | null = null;
    const n = candidates.length;
    const start = this.turn++;
    for (let k = 0; k < n; k++) {
      const b = candidates[(start + k) % n];
      const p = this.predict(b, req, ctx);
      if (
        bestP === null ||
        p.totalMs < bestP.totalMs - 1 ||
        (Math.abs(p.totalMs - bestP.totalMs) <= 1 && b.inFlight / b.weight < best.inFlight / best.weight)
      ) {
        best = b;
        bestP = p;
      }
    }
    const p = bestP as Prediction;
    return { backend: best, reason: n === 1 ? 'only-candidate' : p.warm ? 'warm' : 'cold-load', predictedMs: Math.round(p.totalMs) };
  }

  predict(b: Backend, req: RouteRequest, ctx: PolicyContext): Prediction {
    const model = req.model;
    const slots = Math.max(1, b.config.parallel);
    const svc = (model !== null ? b.serviceMs.get(model)?.value : null) ?? b.serviceMsAll.value ?? DEFAULT_SERVICE_MS;
    const active = model !== null ? b.inFlightFor(model) : b.inFlight;
    // Requests ahead of this one beyond the free slots each hold a slot for about one service time;
    // those queued in the balancer for the same model count too.
    const ahead = Math.max(0, active + 1 + (req.queuedAhead ?? 0) - slots);
    let waitMs = (ahead * svc) / slots;
    // Other models running on the same GPUs slow this one down; a busy GPU (fresh reading) too.
    const others = b.inFlight - (model !== null ? b.inFlightFor(model) : 0);
    const util = b.gpuUtilization(ctx.agentStaleMs, req.now);
    waitMs += others * 50 + (util === null ? 0 : util * 2);
    waitMs /= b.weight;

    if (model === null || b.isLoaded(model, req.now)) {
      return { totalMs: waitMs, waitMs, loadMs: 0, evictMs: 0, warm: true };
    }
    const size = b.modelsOnDisk.get(model)?.size || req.modelSize;
    const msPerByte = b.loadMsPerByte.value ?? DEFAULT_LOAD_MS_PER_BYTE;
    const loadMs = size > 0 ? size * msPerByte : DEFAULT_LOAD_MS;
    const evictMs = this.evictionCost(b, model, size, req.now, ctx, msPerByte, svc);
    return { totalMs: waitMs + loadMs + evictMs, waitMs, loadMs, evictMs, warm: false };
  }

  /** What making room for `model` on `b` costs: zero when it fits beside what is loaded. */
  private evictionCost(b: Backend, model: string, size: number, now: number, ctx: PolicyContext, msPerByte: number, svc: number): number {
    const resident = [...b.modelsLoaded.values()].filter((m) => m.name !== model && (m.expiresAt === null || m.expiresAt > now || b.inFlightFor(m.name) > 0));
    if (resident.length === 0) return 0;
    const max = b.config.maxLoadedModels;
    let mustEvict = max > 0 && resident.length >= max;
    const agent = b.freshAgent(ctx.agentStaleMs, now);
    if (!mustEvict && agent && size > 0) mustEvict = agent.host.memoryFreeBytes < size;
    if (!mustEvict && !agent && max === 0 && size > 0) {
      // No agent and no configured limit: judge by what /api/ps says is resident vs. the largest
      // VRAM footprint we have seen there (a conservative stand-in for total VRAM).
      mustEvict = false;
    }
    if (!mustEvict) return 0;
    // Ollama evicts the least recently used idle model; if every resident model is busy it waits.
    const idle = resident.filter((m) => b.inFlightFor(m.name) === 0);
    if (idle.length === 0) return svc + size * msPerByte;
    idle.sort((x, y) => (b.modelLastUsed.get(x.name) ?? 0) - (b.modelLastUsed.get(y.name) ?? 0));
    const victim = idle[0];
    const lastUsed = b.modelLastUsed.get(victim.name) ?? 0;
    const recency = Math.max(0, 1 - (now - lastUsed) / RECENT_USE_MS);
    return recency * (victim.size > 0 ? victim.size * msPerByte : DEFAULT_LOAD_MS);
  }
}
