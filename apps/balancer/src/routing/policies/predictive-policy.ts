import type { Backend } from '../../fleet/backend';
import { inFlightAt, Pick, PolicyContext, RouteRequest, RoutingPolicy } from './policy';

/** Until a backend has shown its speed, assume a request takes this long... */
export const DEFAULT_SERVICE_MS = 3000;
/** ...and a model loads at about 1 GB/s (2 s for a 2 GB model). */
export const DEFAULT_LOAD_MS_PER_BYTE = 1 / 1_000_000;
/** Loading a model of unknown size is assumed to take this long. */
export const DEFAULT_LOAD_MS = 3000;
/** A model used this recently is still "hot": evicting it will likely cost someone a reload. */
const RECENT_USE_MS = 60_000;
const EMPTY: number[] = [];

export interface Prediction {
  /** Until the answer is complete: what the policy minimises. */
  totalMs: number;
  /** Until the first token: what X-Balancer-Predicted-Ms reports. */
  ttftMs: number;
  waitMs: number;
  loadMs: number;
  evictMs: number;
  serviceMs: number;
  warm: boolean;
}

/** Until a backend has shown its time to first token and token rate, assume these. */
const DEFAULT_TTFT_MS = 300;
const DEFAULT_TOKENS_PER_SEC = 30;

/**
 * Predicts, per candidate, when this request would be answered, and takes the soonest (join the
 * shortest expected delay, with what is specific to Ollama):
 *   wait for a slot (the expected ends of the requests running there for this model, and those
 *     queued in the balancer ahead of it, over the backend's parallel slots)
 *   + the model's load time if it is cold there (size x load speed learned from earlier loads)
 *   + the cost of evicting another model (waiting for it to go idle if every resident model is
 *     busy, and a share of its reload time if it was used recently)
 *   + this request's own service time (time to first token + the output tokens it asked for, or the
 *     usual count, at the token rate learned on that backend).
 * Waiting for a busy warm server wins when that is sooner; loading elsewhere wins when the warm
 * ones are backed up; long answers go to fast GPUs, short ones fill the slow.
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
        (Math.abs(p.totalMs - bestP.totalMs) <= 1 &&
          inFlightAt(b, null, ctx) / b.weight < inFlightAt(best, null, ctx) / best.weight)
      ) {
        best = b;
        bestP = p;
      }
    }
    const p = bestP as Prediction;
    return {
      backend: best,
      reason: n === 1 ? 'only-candidate' : p.warm ? 'warm' : 'cold-load',
      predictedMs: Math.round(p.ttftMs),
      completionMs: Math.round(p.totalMs),
    };
  }

  /** This request's own time on `b` once it has a slot and the model is loaded. */
  serviceTime(b: Backend, req: RouteRequest): { serviceMs: number; ttftMs: number } {
    const model = req.model;
    const ttft = b.learned.ttftMs.value ?? DEFAULT_TTFT_MS;
    const tokens = req.expectedTokens ?? null;
    if (tokens !== null) {
      // A backend that has not shown its speed yet is assumed to be of middling speed.
      const rate = b.learned.tokenRate(model) ?? DEFAULT_TOKENS_PER_SEC;
      return { serviceMs: ttft + (tokens / rate) * 1000, ttftMs: ttft };
    }
    const learned =
      (model !== null ? b.learned.serviceMs.get(model)?.value : null) ??
      b.learned.serviceMsAll.value ??
      DEFAULT_SERVICE_MS;
    return { serviceMs: learned, ttftMs: Math.min(ttft, learned) };
  }

  predict(b: Backend, req: RouteRequest, ctx: PolicyContext): Prediction {
    const model = req.model;
    const slots = Math.max(1, b.config.parallel);
    const { serviceMs, ttftMs } = this.serviceTime(b, req);
    const typical =
      (model !== null ? b.learned.serviceMs.get(model)?.value : null) ?? b.learned.serviceMsAll.value ?? serviceMs;
    const ends = b.runningEnds.get(model) ?? EMPTY;
    const active = inFlightAt(b, model, ctx);
    // Completions needed before a slot is free for this request.
    const need = active + 1 + (req.queuedAhead ?? 0) - slots;
    let waitMs = 0;
    if (need > 0) {
      if (ends.length === active && active > 0 && !ends.includes(0)) {
        // A request past its expected end is not about to finish: it has overrun its prediction, so
        // expect it to run about as long again (waiting behind it is not free).
        const sorted = ends.map((e) => (e < req.now ? 2 * req.now - e : e)).sort((x, y) => x - y);
        const known = Math.min(need, sorted.length);
        waitMs = Math.max(0, sorted[known - 1] - req.now);
        // Beyond the running ones, each further completion frees a slot every typical/slots ms.
        if (need > sorted.length) waitMs += ((need - sorted.length) * typical) / slots;
      } else {
        waitMs = (need * typical) / slots;
      }
    }
    // Other models running on the same GPUs slow this one down; so does a busy GPU (fresh reading).
    const others = inFlightAt(b, null, ctx) - (model !== null ? active : 0);
    const util = b.gpuUtilization(ctx.agentStaleMs, req.now);
    waitMs += others * 50 + (util === null ? 0 : util * 2);

    if (model === null || b.isLoaded(model, req.now)) {
      return {
        totalMs: waitMs + serviceMs,
        ttftMs: waitMs + ttftMs,
        waitMs,
        loadMs: 0,
        evictMs: 0,
        serviceMs,
        warm: true,
      };
    }
    const size = b.modelsOnDisk.get(model)?.size || req.modelSize;
    const msPerByte = b.learned.loadMsPerByte.value ?? DEFAULT_LOAD_MS_PER_BYTE;
    const loadMs = size > 0 ? size * msPerByte : DEFAULT_LOAD_MS;
    const evictMs = this.evictionCost(b, model, size, req.now, ctx, msPerByte, typical);
    const before = waitMs + loadMs + evictMs;
    return { totalMs: before + serviceMs, ttftMs: before + ttftMs, waitMs, loadMs, evictMs, serviceMs, warm: false };
  }

  /** What making room for `model` on `b` costs: zero when it fits beside what is loaded. */
  private evictionCost(
    b: Backend,
    model: string,
    size: number,
    now: number,
    ctx: PolicyContext,
    msPerByte: number,
    svc: number,
  ): number {
    const resident = [...b.modelsLoaded.values()].filter(
      (m) => m.name !== model && (m.expiresAt === null || m.expiresAt > now || b.inFlightFor(m.name) > 0),
    );
    if (resident.length === 0) return 0;
    const max = b.config.maxLoadedModels;
    let mustEvict = max > 0 && resident.length >= max;
    const agent = b.freshAgent(ctx.agentStaleMs, now);
    // A reading the agent could not take (null, or absent) is unknown, not "no memory free".
    const free = agent?.host.memoryFreeBytes;
    if (!mustEvict && typeof free === 'number' && size > 0) mustEvict = free < size;
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
