import { BUSY_BACKOFF_MS, type Backend } from '../../fleet/backend';
import { OLLAMA_DEFAULT_SLOTS } from '../../fleet/learners';
import { inFlightAt, Pick, PolicyContext, RouteRequest, RoutingPolicy } from './policy';

/** Until a backend has shown its speed, assume a request takes this long... */
export const DEFAULT_SERVICE_MS = 3000;
/** ...and a model loads at about 1 GB/s (2 s for a 2 GB model). */
export const DEFAULT_LOAD_MS_PER_BYTE = 1 / 1_000_000;
/** Loading a model of unknown size is assumed to take this long. */
export const DEFAULT_LOAD_MS = 3000;
/** A model used this recently is still "hot": evicting it will likely cost someone a reload. */
const RECENT_USE_MS = 60_000;
/** A model's warm holders count as overloaded when its demand passes this share of their capacity. */
const OVERLOAD = 0.85;
/** A victim model's other holders cover its traffic when their capacity exceeds its demand this much. */
const COVER = 1.25;
/** A cold option must beat the best warm one by this share of it (and at least MIN_GAIN_MS) to be taken. */
const GAIN = 0.1;
const MIN_GAIN_MS = 100;
/** A model asked for less often than this (requests/s, over the demand window) is not in use. */
export const IDLE_DEMAND_PER_S = 0.05;
/** Evicting a model whose other holders cannot take its traffic: a cascade, priced out of reach of any wait. */
const VICTIM_UNCOVERED_MS = 600_000;
/** Warm holders this far past their capacity (demand over capacity) need another copy, now. */
export const SATURATED = 1.0;
/**
 * A load serves the model's traffic for a while, not only the request that starts it: what an
 * eviction costs the victim's traffic (once) is weighed against the requests this many seconds of
 * the model's demand bring (when the model is past its warm capacity).
 */
const AMORTIZE_S = 10;
const EMPTY: number[] = [];

export interface Prediction {
  /** Until the answer is complete: what the policy minimises. */
  totalMs: number;
  /** Until the first token: what X-Balancer-Predicted-Ms reports. */
  ttftMs: number;
  waitMs: number;
  /**
   * What this request waiting for a busy slot there adds to the requests for the model queued
   * behind it in the balancer (each starts one slot's turn later): see rankMs.
   */
  lineMs: number;
  loadMs: number;
  /** What making room costs: waiting for a busy model to go idle, and what its displaced traffic pays. */
  evictMs: number;
  serviceMs: number;
  /** Loaded (or being loaded) there: no load for this request. */
  warm: boolean;
  /** Loading would evict a model there (or may: its room is not known). */
  evicts: boolean;
  /**
   * evictMs is what the victim's traffic pays once (its demand is known and it is not out of reach):
   * it may be spread over the requests the load will serve.
   */
  amortizable: boolean;
}

/** Until a backend has shown its time to first token and token rate, assume these. */
const DEFAULT_TTFT_MS = 300;
const DEFAULT_TOKENS_PER_SEC = 30;

/**
 * Predicts, per candidate, when this request would be answered, and takes the soonest (join the
 * shortest expected delay, with what is specific to Ollama):
 *   wait for a slot (the expected ends of the requests running there for this model, and those
 *     queued in the balancer ahead of it, over the backend's parallel slots: configured, or learned
 *     from Ollama's counters starting from its default of 1)
 *   + the model's load time if it is cold there (size x load speed learned there, or the slowest
 *     any backend has shown: never cheaper than loads have proven to be); a load under way counts
 *     as warm with its remaining time as wait
 *   + the cost of evicting another model when the backend is full, or may be (its room learned from
 *     /api/ps): waiting for it to go idle if every resident model is busy, and, when it was used
 *     recently, what its traffic will pay (little when its other holders can absorb it, a reload
 *     and its queue when they cannot)
 *   + this request's own service time (time to first token + the output tokens it asked for, or the
 *     usual count, at the token rate learned on that backend).
 * Between warm options a wait for a busy slot is also charged what it adds to the requests queued
 * behind this one (rankMs): a free slower server is taken before that line outlasts it.
 * A warm model is never gambled on a guess: a load that evicts is taken only when the model's warm
 * holders are overloaded (recent demand above 85 % of their capacity, or a wait the queue timeout
 * would not allow) and the load is predicted sooner by a margin; while that demand is only assumed
 * (no full window yet), also only when the warm holders would keep this request waiting longer than
 * half the load. A load into free room is taken whenever it is predicted sooner.
 */
export class PredictivePolicy implements RoutingPolicy {
  readonly name = 'predictive';
  readonly weighsWaiting = true;
  private turn = 0;
  private priorCache: { model: string | null; now: number; ctx?: PolicyContext; prior: FleetPrior } | null = null;

  pick(candidates: readonly Backend[], req: RouteRequest, ctx: PolicyContext): Pick {
    const n = candidates.length;
    const start = this.turn++;
    let bestWarm: Backend | null = null;
    let bestWarmP: Prediction | null = null;
    // The warm option done soonest (what a load must beat), which is not always the one taken.
    let soonestWarmP: Prediction | null = null;
    let bestCold: Backend | null = null;
    let bestColdP: Prediction | null = null;
    let bestFree: Backend | null = null;
    let bestFreeP: Prediction | null = null;
    const better = (b: Backend, p: Prediction, best: Backend | null, bestP: Prediction | null): boolean =>
      bestP === null ||
      best === null ||
      rankMs(p) < rankMs(bestP) - 1 ||
      (Math.abs(rankMs(p) - rankMs(bestP)) <= 1 &&
        inFlightAt(b, null, ctx) / b.weight < inFlightAt(best, null, ctx) / best.weight);
    for (let k = 0; k < n; k++) {
      const b = candidates[(start + k) % n];
      const p = this.predict(b, req, ctx);
      if (p.warm) {
        if (better(b, p, bestWarm, bestWarmP)) [bestWarm, bestWarmP] = [b, p];
        if (soonestWarmP === null || p.totalMs < soonestWarmP.totalMs) soonestWarmP = p;
      } else if (!p.evicts) {
        if (better(b, p, bestFree, bestFreeP)) [bestFree, bestFreeP] = [b, p];
      } else if (better(b, p, bestCold, bestColdP)) [bestCold, bestColdP] = [b, p];
    }
    let best: Backend;
    let p: Prediction;
    if (bestWarm === null || bestWarmP === null || soonestWarmP === null) {
      // Nowhere warm: load where it is soonest, free room first unless an eviction is clearly sooner.
      if (bestFreeP !== null && (bestColdP === null || bestFreeP.totalMs <= bestColdP.totalMs))
        [best, p] = [bestFree!, bestFreeP];
      else [best, p] = [bestCold!, bestColdP!];
    } else {
      [best, p] = [bestWarm, bestWarmP];
      const warmP = soonestWarmP;
      const margin = Math.max(MIN_GAIN_MS, warmP.totalMs * GAIN);
      const model = req.model;
      // Past their capacity the warm holders' queue only grows: another copy pays for itself even
      // when this one request would be served sooner by waiting. Into free room it evicts nothing.
      // Judged by the model's own arrivals from its first requests on, not only after a full window.
      const { load, past, pastProven, demand, windowedUnknown } =
        model !== null && (bestFreeP !== null || bestColdP !== null)
          ? this.overload(model, candidates, warmP, req, ctx)
          : NOT_LOADED;
      const saturated = (c: Prediction, ratio = past) => ratio >= SATURATED && warmP.waitMs > c.loadMs / 2;
      // Into free room (it evicts nothing) the holders are judged by the slots they have proven
      // (never fewer than they may have, so never a lower ratio): copies still loading, whose slots
      // nobody has seen, are not counted at the most they may have.
      if (bestFreeP !== null && (bestFreeP.totalMs + margin < warmP.totalMs || saturated(bestFreeP, pastProven)))
        [best, p] = [bestFree!, bestFreeP];
      else if (bestColdP !== null && model !== null) {
        // What the victim's traffic pays, spread over the requests this load will serve.
        const evictMs = bestColdP.amortizable
          ? bestColdP.evictMs / Math.max(1, (demand ?? 0) * AMORTIZE_S)
          : bestColdP.evictMs;
        // Overload only assumed (no full window of the model's demand yet) and no queue at the warm
        // holders worth half the load: an eviction would gamble a warm model on a guess and on this
        // request's speed alone (seen 1.5 s into a run: a rare model, its one warm copy busy for
        // 0.2 s more, loaded on the fastest server, whose busiest model it evicted). It waits for a
        // measured overload or a queue at the warm holders.
        const guess = windowedUnknown && warmP.waitMs <= bestColdP.loadMs / 2;
        if (
          (load >= OVERLOAD && !guess && bestColdP.totalMs + margin < warmP.totalMs) ||
          (saturated(bestColdP) && evictMs < bestColdP.loadMs)
        )
          [best, p] = [bestCold!, bestColdP];
      }
    }
    return {
      backend: best,
      reason: n === 1 ? 'only-candidate' : p.warm ? 'warm' : 'cold-load',
      predictedMs: Math.round(p.ttftMs),
      completionMs: Math.round(p.totalMs),
    };
  }

  /**
   * How loaded the model's warm holders are, in one pass: `load` is its demand over a full window
   * over what they serve per second (proven slots over service time); `past` is its own arrival rate
   * from its first requests on (`demand`) over what they may serve (the slots they may have). Each
   * is OVERLOAD while its demand is not known, and Infinity when waiting there would outlast the
   * queue timeout.
   */
  overload(
    model: string,
    candidates: readonly Backend[],
    bestWarm: Prediction,
    req: RouteRequest,
    ctx: PolicyContext,
  ): { load: number; past: number; pastProven: number; demand: number | null; windowedUnknown: boolean } {
    const windowed = ctx.demandPerS?.(model) ?? null;
    const demand = ctx.arrivalsPerS?.(model) ?? windowed;
    const timeout = ctx.queueTimeoutMs;
    if (timeout !== undefined && bestWarm.waitMs > 0.8 * Math.max(0, timeout - (req.queuedMs ?? 0)))
      return { load: Infinity, past: Infinity, pastProven: Infinity, demand, windowedUnknown: windowed === null };
    let proven = 0;
    let possible = 0;
    if (windowed !== null || demand !== null)
      for (const b of candidates)
        if (this.isWarm(b, model, req.now)) {
          const perSlot = 1000 / Math.max(1, this.usualServiceMs(b, model, req));
          proven += b.slotsFor(model) * perSlot;
          possible += b.slotsAtMost(model) * perSlot;
        }
    const ratio = (d: number | null, capacity: number) =>
      d === null ? OVERLOAD : capacity > 0 ? d / capacity : Infinity;
    return {
      load: ratio(windowed, proven),
      past: ratio(demand, possible),
      pastProven: ratio(demand, proven),
      demand,
      windowedUnknown: windowed === null,
    };
  }

  /** The usual service time of `model` on `b`: learned there, else this request's predicted one. */
  usualServiceMs(b: Backend, model: string, req: RouteRequest): number {
    return b.learned.serviceMs.get(model)?.value ?? this.serviceTime(b, req).serviceMs;
  }

  private isWarm(b: Backend, model: string, now: number): boolean {
    return b.isLoaded(model, now) || b.loadingUntil(model, now) > now;
  }

  /**
   * This request's own time on `b` once it has a slot and the model is loaded. What `b` has not
   * shown yet is taken from the fleet (`fleetPrior`), and from the defaults when no backend has.
   */
  serviceTime(b: Backend, req: RouteRequest, ctx?: PolicyContext): { serviceMs: number; ttftMs: number } {
    const model = req.model;
    const l = b.learned;
    const ttft = l.ttftMs.value ?? this.fleetPrior(model, req.now, ctx).ttftMs ?? DEFAULT_TTFT_MS;
    const tokens = req.expectedTokens ?? null;
    if (tokens !== null) {
      const rate = l.tokenRate(model) ?? this.fleetPrior(model, req.now, ctx).tokensPerS ?? DEFAULT_TOKENS_PER_SEC;
      return { serviceMs: ttft + (tokens / rate) * 1000, ttftMs: ttft };
    }
    const learned =
      (model !== null ? l.serviceMs.get(model)?.value : null) ??
      l.serviceMsAll.value ??
      this.fleetPrior(model, req.now, ctx).serviceMs ??
      DEFAULT_SERVICE_MS;
    return { serviceMs: learned, ttftMs: Math.min(ttft, learned) };
  }

  /**
   * What a backend that has not shown its speed is assumed to do: the median of what the fleet's
   * backends have shown (for the model, else for any model). A fixed default of middling speed
   * makes a fast server nobody has tried look slow beside a known fast one: it got no request
   * while that one queued (on a ramp, the first answers come from whichever server was tried
   * first). With the fleet's median it is tried, with one request (its slots are being learned too),
   * as soon as the known servers would keep a request waiting. Only for that one request, and only
   * where the model is warm (see `predict`). Computed once per routing decision (model and time).
   */
  fleetPrior(model: string | null, now: number, ctx?: PolicyContext): FleetPrior {
    if (ctx?.available === undefined) return NO_PRIOR;
    const c = this.priorCache;
    if (c !== null && c.model === model && c.now === now && c.ctx === ctx) return c.prior;
    const rates: number[] = [];
    const ttfts: number[] = [];
    const services: number[] = [];
    let shown = 0;
    let missing = 0;
    for (const o of ctx.available()) {
      const l = o.learned;
      for (const s of l.slots.values()) {
        shown += Math.max(0, s.lower - OLLAMA_DEFAULT_SLOTS);
        if (s.upper !== Infinity) missing++;
      }
      const rate = l.tokenRate(model);
      if (rate !== null) rates.push(rate);
      if (l.ttftMs.value !== null) ttfts.push(l.ttftMs.value);
      const svc = (model !== null ? l.serviceMs.get(model)?.value : null) ?? l.serviceMsAll.value;
      if (svc !== null && svc !== undefined) services.push(svc);
    }
    const prior = {
      tokensPerS: median(rates),
      ttftMs: median(ttfts),
      serviceMs: median(services),
      probeMissOdds: probeMissOdds(shown, missing),
    };
    this.priorCache = { model, now, ctx, prior };
    return prior;
  }

  /** ms per byte to load a model on `b`: what it has shown, else the slowest any backend has shown (or the default). */
  loadMsPerByte(b: Backend, ctx: PolicyContext): number {
    const own = b.learned.loadMsPerByte.value;
    if (own !== null) return own;
    return Math.max(DEFAULT_LOAD_MS_PER_BYTE, ctx.provenLoadMsPerByte?.() ?? 0);
  }

  /** How long loading `model` on `b` should take. */
  loadMs(b: Backend, model: string, req: RouteRequest, ctx: PolicyContext): number {
    const size = b.modelsOnDisk.get(model)?.size || req.modelSize;
    return size > 0 ? size * this.loadMsPerByte(b, ctx) : DEFAULT_LOAD_MS;
  }

  predict(b: Backend, req: RouteRequest, ctx: PolicyContext): Prediction {
    const model = req.model;
    const slots = b.slotsFor(model);
    // The fleet's speeds stand in for unshown ones only for the one request that will show them: on
    // a warm server with nothing running (a cold one stays at the defaults: a guess of speed made
    // loads look cheaper than they proved; and a second request before the first has answered
    // could be one more on a slow server).
    const allInFlight = inFlightAt(b, null, ctx);
    const loadingUntil = model === null ? 0 : b.loadingUntil(model, req.now);
    const warm = model === null || b.isLoaded(model, req.now) || loadingUntil > req.now;
    const { serviceMs, ttftMs } = this.serviceTime(b, req, allInFlight === 0 && warm ? ctx : undefined);
    const typical =
      (model !== null ? b.learned.serviceMs.get(model)?.value : null) ?? b.learned.serviceMsAll.value ?? serviceMs;
    const ends = b.runningEnds.get(model) ?? EMPTY;
    const active = inFlightAt(b, model, ctx);
    // Completions needed before a slot is free for this request.
    const ahead = req.aheadAt !== undefined ? (req.aheadAt.get(b.name) ?? 0) : (req.queuedAhead ?? 0);
    const need = active + 1 + ahead - slots;
    let waitMs = 0;
    // Whether it waits for a busy slot (and so holds up the requests behind it: see rankMs).
    let holdsLine = false;
    if (need > 0) {
      if (ends.length === active && active > 0 && !ends.includes(0)) {
        // A request past its expected end is not about to finish: it has overrun its prediction, so
        // expect it to run about as long again (waiting behind it is not free).
        const sorted = ends.map((e) => (e < req.now ? 2 * req.now - e : e)).sort((x, y) => x - y);
        // With `slots` running at once, the k-th completion frees the k-th slot; later ones queue behind.
        const known = Math.min(need, sorted.length);
        waitMs = Math.max(0, sorted[known - 1] - req.now);
        // Beyond the running ones, each further completion frees a slot every typical/slots ms.
        if (need > sorted.length) waitMs += ((need - sorted.length) * typical) / slots;
      } else {
        waitMs = (need * typical) / slots;
      }
      // The first request past the proven slots is the probe that shows whether one more exists
      // (slots are being learned): it starts at once if it does, and waits as above if it does not.
      // It pays the wait by the odds that the slot is missing, as the fleet's probes have turned
      // out (even odds before any has). Priced at the full wait, a server whose slots are not shown
      // yet looks busier than a slow one, and its slots are never shown.
      // It holds up nobody if the slot exists, and what it shows is worth its wait to those behind.
      if (need === 1 && b.slotsAtMost(model) > slots) waitMs *= this.fleetPrior(model, req.now, ctx).probeMissOdds;
      else holdsLine = waitMs > 0;
    }
    const lineMs = holdsLine ? ((req.queuedBehind ?? 0) * typical) / slots : 0;
    // Other models running on the same GPUs slow this one down; so does a busy GPU (fresh reading).
    const others = allInFlight - (model !== null ? active : 0);
    const util = b.gpuUtilization(ctx.agentStaleMs, req.now);
    waitMs += others * 50 + (util === null ? 0 : util * 2);
    // It said its own queue is full a moment ago: count the rest of that backoff as waiting.
    if (b.busyUntil > req.now) waitMs += b.busyUntil - req.now + BUSY_BACKOFF_MS;

    const reload =
      model !== null &&
      loadingUntil <= req.now &&
      b.isLoaded(model, req.now) &&
      b.forcesReload(model, req.runnerOptions);
    if (reload) {
      // Other runner options: Ollama reloads the model once the requests running on it finish.
      const last = ends.length > 0 && !ends.includes(0) ? Math.max(...ends) - req.now : active > 0 ? typical : 0;
      const loadMs = this.loadMs(b, model, req, ctx);
      const before = Math.max(waitMs, last) + loadMs;
      return {
        totalMs: before + serviceMs,
        ttftMs: before + ttftMs,
        waitMs: Math.max(waitMs, last),
        lineMs,
        loadMs,
        evictMs: 0,
        serviceMs,
        warm: false,
        evicts: false,
        amortizable: false,
      };
    }
    if (warm) {
      // A load under way: the rest of it is waited for, like a slot.
      if (loadingUntil > req.now) waitMs = Math.max(waitMs, loadingUntil - req.now);
      return {
        totalMs: waitMs + serviceMs,
        ttftMs: waitMs + ttftMs,
        waitMs,
        lineMs,
        loadMs: 0,
        evictMs: 0,
        serviceMs,
        warm: true,
        evicts: false,
        amortizable: false,
      };
    }
    const size = b.modelsOnDisk.get(model)?.size || req.modelSize;
    const msPerByte = this.loadMsPerByte(b, ctx);
    const loadMs = this.loadMs(b, model, req, ctx);
    const eviction = this.evictionCost(b, model, size, req.now, ctx, msPerByte, typical, req);
    const before = waitMs + loadMs + eviction.costMs;
    return {
      totalMs: before + serviceMs,
      ttftMs: before + ttftMs,
      waitMs,
      lineMs,
      loadMs,
      evictMs: eviction.costMs,
      serviceMs,
      warm: false,
      evicts: eviction.evicts,
      amortizable: eviction.amortizable,
    };
  }

  /** What making room for `model` on `b` costs: nothing when it fits beside what is loaded. */
  private evictionCost(
    b: Backend,
    model: string,
    size: number,
    now: number,
    ctx: PolicyContext,
    msPerByte: number,
    svc: number,
    req: RouteRequest,
  ): Eviction {
    const resident = [...b.modelsLoaded.values()].filter(
      (m) => m.name !== model && b.isLoaded(m.name, now) && (m.expiresAt === null || m.expiresAt > now),
    );
    for (const name of b.loading.keys())
      if (name !== model && !resident.some((m) => m.name === name))
        resident.push({ name, size: b.sizeOf(name) } as never);
    if (resident.length === 0) return NO_EVICTION;
    let mustEvict = resident.length >= b.room;
    const agent = b.freshAgent(ctx.agentStaleMs, now);
    // A reading the agent could not take (null, or absent) is unknown, not "no memory free".
    const free = agent?.host.memoryFreeBytes;
    if (typeof free === 'number' && size > 0) {
      if (free < size) mustEvict = true;
      else if (!b.roomKnown) mustEvict = false; // memory says it fits, and no count limit is known
    }
    if (!mustEvict) return NO_EVICTION;
    // Out of reach of any wait when the room is known to be full; when it is only a lower bound (no
    // eviction or held-back load seen there yet) the load may fit after all: priced, not forbidden.
    const outOfReach = b.roomKnown ? VICTIM_UNCOVERED_MS : 0;
    // Ollama evicts the least recently used idle model. If every resident model is busy it holds
    // the load (and this request) until one goes idle. Known full: out of reach. Room only a lower
    // bound: the load may fit beside them, and if Ollama holds it back the request is taken elsewhere
    // as soon as /api/ps shows that (and the room is then known): the gamble costs about one look.
    let victim: { name: string; size: number } | null = null;
    for (const m of resident)
      if (
        b.inFlightFor(m.name) === 0 &&
        !b.loading.has(m.name) &&
        (victim === null || (b.modelLastUsed.get(m.name) ?? 0) < (b.modelLastUsed.get(victim.name) ?? 0))
      )
        victim = m;
    if (victim === null)
      return {
        costMs: outOfReach > 0 ? 2 * svc + size * msPerByte + outOfReach : 2 * svc,
        evicts: true,
        amortizable: false,
      };
    return this.victimCost(b, victim, now, ctx, msPerByte, svc, req, outOfReach);
  }

  /** What evicting `victim` from `b` costs the traffic that model has. */
  private victimCost(
    b: Backend,
    victim: { name: string; size: number },
    now: number,
    ctx: PolicyContext,
    msPerByte: number,
    svc: number,
    req: RouteRequest,
    outOfReach: number,
  ): Eviction {
    const lastUsed = b.modelLastUsed.get(victim.name) ?? 0;
    const victimLoadMs = victim.size > 0 ? victim.size * msPerByte : DEFAULT_LOAD_MS;
    // Its traffic moves to its other holders: free when nobody asks for it, cheap when they can take
    // it, a reload (and the queue that builds meanwhile) when they cannot. Judged by the model's
    // demand fleet-wide, not by whether this backend served it lately: a warm copy nobody was sent to
    // yet may be the capacity its traffic needs.
    // Demand not known yet (too little traffic seen): priced as uncovered (a warm model is not gambled
    // on a guess).
    const demand =
      ctx.demandPerS === undefined
        ? now - lastUsed < RECENT_USE_MS
          ? Infinity
          : 0
        : (ctx.demandPerS(victim.name) ?? ctx.arrivalsPerS?.(victim.name) ?? null);
    if (demand === null) return { costMs: 3 * victimLoadMs + 2 * svc + outOfReach, evicts: true, amortizable: false };
    if (demand < IDLE_DEMAND_PER_S) return { costMs: 0, evicts: true, amortizable: true };
    let cover = 0;
    // Only what those holders have shown for it counts: a holder whose service time for the victim is
    // not known yet may be far slower than a default (a guess is no cover).
    for (const o of ctx.available?.() ?? EMPTY_BACKENDS) {
      const shown = o.learned.serviceMs.get(victim.name)?.value ?? null;
      if (o !== b && shown !== null && o.isLoaded(victim.name, now))
        cover += (o.slotsFor(victim.name) * 1000) / Math.max(1, shown);
    }
    // Uncovered: its traffic needs a reload elsewhere, or a server that holds it too but has not
    // shown what it serves of it. A reload and its queue when the load here may yet fit, when another
    // server has it loaded (or loading), or when one holding it on disk may take it without evicting
    // for sure; out of reach when this room is known to be full and every such reload would evict in
    // turn (a cascade).
    if (cover >= COVER * demand) return { costMs: 0.25 * victimLoadMs, evicts: true, amortizable: true };
    const cascade = outOfReach > 0 && !this.servableElsewhere(victim.name, b, now, ctx);
    return { costMs: 3 * victimLoadMs + 2 * svc + (cascade ? outOfReach : 0), evicts: true, amortizable: !cascade };
  }

  /**
   * Whether another available server could take `model`'s traffic without evicting for sure: one
   * that has it loaded or loading (even where it has not shown its speed for it yet), or holds it on
   * disk with room for it that is not known to be full (its room not known yet, or fewer models
   * loaded than it is known to keep).
   */
  private servableElsewhere(model: string, not: Backend, now: number, ctx: PolicyContext): boolean {
    for (const o of ctx.available?.() ?? EMPTY_BACKENDS) {
      if (o === not) continue;
      if (o.isLoaded(model, now) || o.loadingUntil(model, now) > now) return true;
      if (!o.hasModel(model)) continue;
      if (!o.roomKnown) return true;
      if (o.loadedCount(now) + o.loading.size < o.room) return true;
    }
    return false;
  }
}

const EMPTY_BACKENDS: readonly Backend[] = [];

/**
 * How the policy ranks options where the model is warm: the predicted completion, plus, where the
 * request would wait for a busy slot, what that wait adds to the requests queued behind it (each
 * starts one slot's turn later there). Join the shortest expected delay applied to each request
 * alone makes the head of a line wait for a fast server while a free slower one idles, and the
 * line behind it pays; it takes the slower one when that is done no later than the line's last
 * request would be (measured in docs/benchmarks.md, 2026-12-02). Counting the wait itself once
 * more instead sent requests to very slow servers after a short line and made them the tail.
 * Whether to load at all is judged on totalMs.
 */
export function rankMs(p: Prediction): number {
  return p.warm ? p.totalMs + p.lineMs : p.totalMs;
}

interface FleetPrior {
  tokensPerS: number | null;
  ttftMs: number | null;
  serviceMs: number | null;
  /** The odds that the slot a probe asks for is missing (probeMissOdds). */
  probeMissOdds: number;
}

/**
 * The odds that a probe for one more slot finds none, from how the fleet's probes turned out:
 * every slot shown beyond Ollama's default was a probe that found one, every ceiling Ollama's
 * counters showed (a request queued) one that did not. Laplace's rule: even odds before any probe,
 * about 1/n after n hits and no miss, most of the wait on a fleet of default one-slot servers.
 * Each (server, model) fails at most one probe (its ceiling is then known), while a slot shown
 * serves every later request: the odds, not a fixed half, decide whether a probe is worth it.
 */
export function probeMissOdds(shown: number, missing: number): number {
  return (missing + 1) / (shown + missing + 2);
}

const NO_PRIOR: FleetPrior = { tokensPerS: null, ttftMs: null, serviceMs: null, probeMissOdds: probeMissOdds(0, 0) };

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  xs.sort((a, b) => a - b);
  const h = xs.length >> 1;
  return xs.length % 2 === 1 ? xs[h] : (xs[h - 1] + xs[h]) / 2;
}

interface Eviction {
  costMs: number;
  evicts: boolean;
  /** A one-off cost to the victim's known traffic (not a guess, not out of reach). */
  amortizable: boolean;
}

const NO_EVICTION: Eviction = { costMs: 0, evicts: false, amortizable: false };

const NOT_LOADED = { load: 0, past: 0, pastProven: 0, demand: null, windowedUnknown: false };
