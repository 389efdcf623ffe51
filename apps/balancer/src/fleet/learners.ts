/**
 * Pure learners of what an unconfigured fleet does not say about itself. No I/O, no clocks of their
 * own (every time is passed in), so they are unit-tested without sockets; `LearnedStats` owns one
 * set per backend and feeds them from answers and inventory polls.
 */

/** Ollama's default OLLAMA_NUM_PARALLEL (since 0.10): where slot learning starts. */
export const OLLAMA_DEFAULT_SLOTS = 1;

/** One request's passage through a backend, as the slot learner needs it. */
export interface SlotSample {
  /** When the balancer sent it (ms). */
  dispatchedAt: number;
  /** Its place in the order of dispatch here (several are often sent within one millisecond). */
  seq: number;
  /** When its answer ended (ms); null while it runs. */
  endedAt: number | null;
  /** When its first byte came back (it was running from then on); null before. */
  firstByteAt?: number | null;
  /** When its run at Ollama began, from its counters (end less prompt and eval time); null before it ends. */
  runFrom?: number | null;
}

/** What Ollama's final counters say about one finished request (ms; see `queueWaitMs`). */
export interface FinishedRequest {
  sample: SlotSample;
  /** Time it waited in Ollama for a free slot (total - load - prompt eval - eval). */
  queueWaitMs: number;
  /** prompt eval + eval: how long it held its slot. */
  runMs: number;
}

/**
 * Ollama's slot wait, from its own counters: total_duration counts from the moment the request
 * reached the server, load_duration the wait for the model, prompt_eval and eval the time it held
 * a slot; what is left is the time it queued silently behind the runner's parallel slots.
 * Null when a counter is missing (then nothing is learned).
 */
export function queueWaitMs(totalNs?: number, loadNs?: number, promptNs?: number, evalNs?: number): number | null {
  if (totalNs === undefined || promptNs === undefined || evalNs === undefined || !(totalNs > 0)) return null;
  return Math.max(0, (totalNs - (loadNs ?? 0) - promptNs - evalNs) / 1e6);
}

/**
 * Effective parallel slots of one model on one backend. Ollama serves OLLAMA_NUM_PARALLEL requests
 * per loaded model and queues the rest without saying so; its counters tell afterwards whether a
 * request queued. A request that did not queue proves that every request in flight when it started
 * was running (FIFO: none was queued ahead of it): slots >= that many. One that queued proves every
 * slot was busy: slots <= the requests in flight when it was sent, less itself.
 *
 * The estimate is the proven lower bound (so waits are never predicted too short); `probeCap`
 * allows one request beyond it, so that a backend with more slots gets the chance to show them.
 */
export class SlotLearner {
  /** Slots proven to exist (at least this many ran at once without queueing). */
  lower = OLLAMA_DEFAULT_SLOTS;
  /** Fewest requests in flight seen to make a newcomer queue, less one (slots <= this); Infinity when never seen. */
  upper = Infinity;
  observations = 0;
  /** Recent requests of this model here (finished ones kept briefly for the overlap count). */
  private readonly recent: SlotSample[] = [];
  /** Requests sent so far (the next one's `seq`). */
  private sent = 0;

  constructor(
    /** A queue wait below this many ms (plus 5 % of the run) is scheduling noise, not a slot wait. */
    private readonly noiseMs = 50,
    private readonly keep = 64,
  ) {}

  get estimate(): number {
    return this.lower;
  }

  /** How many to let in flight at once: one beyond what is proven, never past a proven ceiling. */
  get probeCap(): number {
    return Math.min(this.lower + 1, this.upper);
  }

  /** A request was sent; returns the sample to finish later. */
  begin(now: number): SlotSample {
    const s: SlotSample = { dispatchedAt: now, seq: this.sent++, endedAt: null };
    this.recent.push(s);
    if (this.recent.length > this.keep) {
      // Drop the oldest finished one (running ones must stay: they are someone's overlap), and never
      // keep more than 4x `keep` (bounded memory and work if the cap is configured away).
      const i = this.recent.findIndex((x) => x.endedAt !== null);
      if (i >= 0) this.recent.splice(i, 1);
      else if (this.recent.length > 4 * this.keep) this.recent.shift();
    }
    return s;
  }

  /**
   * Its first byte came back: it holds a slot now, and so does every request sent before it that is
   * still in flight (Ollama starts them in order; sent before = earlier in the order of dispatch,
   * not merely in the same millisecond): at least that many slots exist. Needs no
   * counters (any API surface) and proves slots as soon as they are used, not when answers end.
   */
  started(s: SlotSample, now: number): void {
    if (s.endedAt !== null) return;
    s.firstByteAt = now;
    this.proveRunning(s, now, 0);
  }

  /**
   * `s` was running at `t`: so were the others proven running then (their own first byte came
   * before and they had not ended, or their counters put their run across it). Only proven
   * overlaps count: requests reach Ollama over separate connections, so the order they were sent in
   * is not the order they started in.
   */
  private proveRunning(s: SlotSample, t: number, margin: number): void {
    let running = 1;
    for (const o of this.recent) {
      if (o === s) continue;
      const endsAfter = o.endedAt === null || o.endedAt > t + margin;
      if (!endsAfter) continue;
      if ((o.firstByteAt != null && o.firstByteAt <= t) || (o.runFrom != null && o.runFrom <= t - margin)) running++;
    }
    if (running > this.lower) this.lower = running;
    if (this.lower > this.upper) this.upper = Infinity; // the ceiling was wrong (a restart with more slots?)
  }

  /** The request ended without counters (an error, a client gone): only its slot is released. */
  abandon(s: SlotSample, now: number): void {
    s.endedAt = now;
  }

  /** The request ended with Ollama's counters. */
  finish(r: FinishedRequest, now: number): void {
    const s = r.sample;
    s.endedAt = now;
    this.observations++;
    const noise = this.noiseMs + 0.05 * r.runMs;
    s.runFrom = now - r.runMs;
    if (r.queueWaitMs <= noise) {
      // It ran from `runFrom` on: count the others proven running just after it started.
      this.proveRunning(s, s.runFrom + noise, noise);
    } else {
      // Every slot was busy when it arrived: no more slots than requests already in flight then.
      let inFlight = 0;
      for (const o of this.recent)
        if (o !== s && o.seq < s.seq && (o.endedAt === null || o.endedAt > s.dispatchedAt)) inFlight++;
      if (inFlight >= 1 && inFlight < this.upper) this.upper = inFlight;
      if (this.lower > this.upper) this.lower = this.upper; // fewer slots than once proven (a restart with fewer)
    }
  }
}

/**
 * How many models a backend keeps loaded at once (OLLAMA_MAX_LOADED_MODELS, or what its memory
 * allows). Seen from /api/ps: the most models resident together is a lower bound; a load after
 * which another, unexpired model left /api/ps shows the ceiling.
 */
export class RoomLearner {
  /** Most models seen resident at once. */
  maxSeen = 0;
  /** Models resident right after a load evicted another (the room); null until an eviction is seen. */
  ceiling: number | null = null;

  /** An /api/ps reading. */
  observe(resident: number): void {
    if (resident > this.maxSeen) this.maxSeen = resident;
    if (this.ceiling !== null && resident > this.ceiling) this.ceiling = null; // it holds more than we thought
  }

  /**
   * A load of `loaded` finished; `before` were resident (and not expiring) when it was sent, `after`
   * are resident now. A model of `before` missing from `after` was evicted to make room.
   */
  observeLoad(before: readonly string[], after: readonly string[], loaded: string): void {
    this.observe(after.length);
    const evicted = before.some((m) => m !== loaded && !after.includes(m));
    if (evicted) this.ceiling = Math.max(1, after.length);
  }

  /** A load was held back while `resident` models were loaded: that is all the room there is. */
  observeFull(resident: number): void {
    this.observe(resident);
    this.ceiling = Math.max(1, resident);
  }

  /**
   * Models it can hold at once, as far as routing should count on: the ceiling once an eviction has
   * shown it, otherwise what it has been seen to hold (an unproven extra slot counts as full:
   * uncertainty weighs against the load). At least 1.
   */
  get estimate(): number {
    return Math.max(1, this.ceiling ?? this.maxSeen);
  }

  /** Whether the ceiling has been seen (an eviction), not only guessed from what was resident. */
  get known(): boolean {
    return this.ceiling !== null;
  }
}

/** An exponentially weighted moving average that starts from its first sample. */
export class Ewma {
  value: number | null = null;
  constructor(private readonly alpha: number) {}
  add(sample: number): void {
    this.value = this.value === null ? sample : this.value + this.alpha * (sample - this.value);
  }
}

/**
 * Prompt evaluation speed (ms per prompt token). Since Ollama 0.30 prompt_eval_count includes the
 * tokens served from the prompt cache while prompt_eval_duration covers only the rest, so a cache
 * hit looks like a very fast prefill. Learn from answers that did not continue a conversation, and
 * from others only when they are not much faster than what was learned (a hit would be).
 */
export class PrefillLearner {
  private readonly avg = new Ewma(0.2);

  get msPerToken(): number | null {
    return this.avg.value;
  }

  /** The learned ms per prompt token, as routing reads it and the replicas' sync shares it (REDIS_URL). */
  get value(): number | null {
    return this.avg.value;
  }

  /** Another replica's view merged in (shared-fleet-sync): the average moves there. */
  set value(v: number | null) {
    this.avg.value = v;
  }

  observe(promptTokens: number | undefined, promptNs: number | undefined, continuesConversation: boolean): void {
    if (promptTokens === undefined || promptNs === undefined || promptTokens < 8 || !(promptNs > 0)) return;
    const ms = promptNs / 1e6 / promptTokens;
    const known = this.avg.value;
    if (continuesConversation && (known === null || ms < known * 0.5)) return;
    if (!continuesConversation && known !== null && ms < known * 0.2) return; // a shared system prompt cached
    this.avg.add(ms);
  }
}

/**
 * Usual output length of one model. A request's num_predict / max_tokens is an upper bound: the
 * expectation is that bound times how much of its bound the model usually uses, or, without a
 * bound, the usual eval_count.
 */
export class OutputLengthLearner {
  private readonly tokens = new Ewma(0.1);
  /** eval_count / num_predict of answers that had a bound (1 = always runs to the cap). */
  private readonly useOfBound = new Ewma(0.1);

  observe(evalCount: number | undefined, bound: number | null): void {
    if (evalCount === undefined || !(evalCount >= 0)) return;
    this.tokens.add(evalCount);
    if (bound !== null && bound > 0) this.useOfBound.add(Math.min(1, evalCount / bound));
  }

  /**
   * Expected output tokens of a request with this bound (null = no bound); null when nothing is known.
   * Before any bounded answer, a bound caps the usual length (it is a limit, not a wish).
   */
  expected(bound: number | null): number | null {
    const usual = this.tokens.value === null ? null : Math.max(1, Math.round(this.tokens.value));
    if (bound !== null && bound > 0) {
      const use = this.useOfBound.value;
      if (use === null && usual !== null) return Math.max(1, Math.round(Math.min(bound, usual)));
      return Math.max(1, Math.round(bound * (use ?? 1)));
    }
    return usual;
  }

  get usual(): number | null {
    return this.tokens.value;
  }
}
