import type { Backend, RunnerOptions } from '../../fleet/backend';
import type { QueueIdentity } from '../priority-class';

/** What routing knows about the request being placed. */
export interface RouteRequest {
  /** Normalised model name, or null for routes without one. */
  model: string | null;
  /** Size of the model in bytes where some backend reported it (for load-time estimates). */
  modelSize: number;
  /** Conversation key for session affinity, or null. */
  sessionKey: string | null;
  now: number;
  /** The name as the client wrote it, for error messages. */
  displayModel?: string;
  /** Requests for the same model queued in the balancer ahead of this one. */
  queuedAhead?: number;
  /** Requests for the same model queued in the balancer behind this one. */
  queuedBehind?: number;
  /**
   * In a queue pass: per backend name, the requests for the model ahead of this one in the queue
   * that chose to wait for that backend (they take its next slots, not the others'). When absent,
   * `queuedAhead` counts against every backend.
   */
  aheadAt?: ReadonlyMap<string, number>;
  /** How long it has waited in the balancer's queue already (ms). */
  queuedMs?: number;
  /** Its priority class, key and weight in the placement queue (default class, no key when absent). */
  queue?: QueueIdentity;
  /** Output tokens the client asked for at most (num_predict, max_tokens), when it said. */
  expectedTokens?: number | null;
  /** Rough prompt size in tokens (for what prompt-cache affinity saves). */
  promptTokens?: number;
  /**
   * Capabilities the model must have on the chosen backend (`tools`, `thinking`, `vision`), as
   * /api/tags or /api/show list them; absent or empty: none.
   */
  capabilities?: readonly string[];
  /** The request's path: a backend that lacks the route (an older Ollama) is no candidate for it. */
  route?: string;
  /** The runner options it names: a loaded runner with other options must be reloaded for it. */
  runnerOptions?: RunnerOptions;
  /** Only backends whose copy of the model has this digest (a resumed stream must continue on the same weights). */
  digest?: string;
}

/** Why a backend was chosen: shown in X-Balancer-Reason and the decision log. */
export type PickReason =
  | 'warm'
  | 'cold-load'
  | 'affinity'
  | 'only-candidate'
  | 'least-loaded'
  | 'round-robin'
  | 'least-connections'
  | 'seed-score'
  | 'any';

export interface Pick {
  backend: Backend;
  reason: PickReason;
  /** Predicted milliseconds until the first token, where the policy predicts. */
  predictedMs?: number;
  /** Predicted milliseconds until the answer is complete, where the policy predicts. */
  completionMs?: number;
}

export interface PolicyContext {
  /** A reading older than this counts as unknown. */
  agentStaleMs: number;
  /** How long a request may wait in the queue (QUEUE_TIMEOUT_MS): a wait past it is no option. */
  queueTimeoutMs?: number;
  /**
   * Requests per second recently arriving here for the model; null while too little traffic has
   * been seen to say (unknown is not zero).
   */
  demandPerS?: (model: string) => number | null;
  /**
   * The arrival rate of the model being placed, from its first requests on (it is being asked for,
   * so its own rate is evidence, not a guess); null when it has not been asked for.
   */
  arrivalsPerS?: (model: string) => number | null;
  /**
   * The slowest load speed (ms per byte) any backend has shown: the prior of a backend that has not
   * loaded anything yet (a load is never assumed cheaper than loads have proven to be).
   */
  provenLoadMsPerByte?: () => number | null;
  /** The backends that may serve requests now (for a victim model's other holders). */
  available?: () => readonly Backend[];
  /**
   * Requests other balancer replicas have in flight at the backend (for `model`, or in all when
   * null), as Redis last counted them; absent for a single balancer. Policies add it to the
   * backend's own counts so that every replica sees the fleet's load.
   */
  othersInFlight?: (b: Backend, model: string | null) => number;
}

/** Requests in flight at the backend (for the model, or all when null), this replica's and the others'. */
export function inFlightAt(b: Backend, model: string | null, ctx?: PolicyContext): number {
  const own = model === null ? b.inFlight : b.inFlightFor(model);
  return ctx?.othersInFlight ? own + ctx.othersInFlight(b, model) : own;
}

/**
 * A routing policy ranks candidates that already passed the filters (healthy, not cordoned or
 * ejected, holding the model, under their caps). Keep each one small: filters live in RoutingService.
 */
export interface RoutingPolicy {
  readonly name: string;
  /**
   * True when the policy ranks backends that are at their concurrency cap too, so that waiting for
   * a busy warm server can beat loading the model elsewhere. Others only see backends with room.
   */
  readonly weighsWaiting?: boolean;
  pick(candidates: readonly Backend[], req: RouteRequest, ctx: PolicyContext): Pick;
}

/** Index of the smallest score; ties broken by fewer in-flight, then by a rotating start. */
export function argmin(candidates: readonly Backend[], score: (b: Backend) => number, tieStart: number): number {
  let best = -1;
  let bestScore = Infinity;
  const n = candidates.length;
  for (let k = 0; k < n; k++) {
    const i = (tieStart + k) % n;
    const s = score(candidates[i]);
    if (
      s < bestScore - 1e-9 ||
      (Math.abs(s - bestScore) <= 1e-9 && best >= 0 && candidates[i].inFlight < candidates[best].inFlight)
    ) {
      best = i;
      bestScore = s;
    }
  }
  return best < 0 ? 0 : best;
}
