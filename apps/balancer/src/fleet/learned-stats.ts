import { Ewma, PrefillLearner, queueWaitMs, RoomLearner, SlotLearner, SlotSample } from './learners';

export { Ewma };

/** Ollama's counters from the final chunk of an answer (any that it carried). */
export interface OllamaCounters {
  evalCount?: number;
  evalDurationNs?: number;
  promptEvalCount?: number;
  promptEvalDurationNs?: number;
  loadDurationNs?: number;
  totalDurationNs?: number;
}

/** A load shorter than this was a warm start (a few ms), not a real load: it teaches nothing. */
const REAL_LOAD_MS = 200;

/**
 * What one backend's answers have taught about its speed: the one place learning happens. The
 * routing policies read it; the proxy and the load fan-out feed it.
 */
export class LearnedStats {
  /** Milliseconds per byte of model to load it here, learned from load_duration. */
  readonly loadMsPerByte = new Ewma(0.3);
  /** Service time of a request in ms per model, learned from what passes through. */
  readonly serviceMs = new Map<string, Ewma>();
  readonly serviceMsAll = new Ewma(0.2);
  readonly ttfbMs = new Ewma(0.2);
  /** Output speed (tokens/s per request) per model, from Ollama's eval_count / eval_duration. */
  readonly tokensPerSec = new Map<string, Ewma>();
  readonly tokensPerSecAll = new Ewma(0.2);
  /** Models whose rate is only an early reading (noteEarlyRate), and whether tokensPerSecAll is. */
  private readonly early = new Set<string>();
  private earlyAll = false;
  /** Time to first token of streamed requests (prompt evaluation and overhead), ms. */
  readonly ttftMs = new Ewma(0.2);
  /**
   * Prompt evaluation speed, ms per prompt token (`.value`), learned so that prompt-cache hits
   * (which Ollama counts in prompt_eval_count) do not pass for a fast prefill.
   */
  readonly promptMsPerToken = new PrefillLearner();
  /** Parallel slots per model, learned from whether requests queued inside Ollama (fleet/learners.ts). */
  readonly slots = new Map<string, SlotLearner>();
  /** How many models it keeps loaded at once, from /api/ps and the evictions seen there. */
  readonly room = new RoomLearner();

  slotLearner(model: string): SlotLearner {
    let l = this.slots.get(model);
    if (!l) this.slots.set(model, (l = new SlotLearner()));
    return l;
  }

  /** A request for `model` was sent here: the sample its answer finishes. */
  beginSlot(model: string, now: number): SlotSample {
    return this.slotLearner(model).begin(now);
  }

  /** Its first byte came back (it holds a slot now). */
  startedSlot(model: string, sample: SlotSample): void {
    this.slots.get(model)?.started(sample, Date.now());
  }

  /**
   * The request ended: with Ollama's counters when it answered (they tell whether it queued for a
   * slot), or without (an error, a client gone: only the overlap bookkeeping ends).
   */
  endSlot(model: string, sample: SlotSample, counters: OllamaCounters | null, now: number): void {
    const l = this.slots.get(model);
    if (!l || sample.endedAt !== null) return;
    const wait =
      counters === null
        ? null
        : queueWaitMs(
            counters.totalDurationNs,
            counters.loadDurationNs,
            counters.promptEvalDurationNs,
            counters.evalDurationNs,
          );
    if (wait === null) return l.abandon(sample, now);
    const runMs = ((counters!.promptEvalDurationNs ?? 0) + (counters!.evalDurationNs ?? 0)) / 1e6;
    l.finish({ sample, queueWaitMs: wait, runMs }, now);
  }

  /**
   * One complete answer: its service time, Ollama's counters, a real load's speed (`modelSize`
   * bytes, 0 when unknown), for a stream the time to its first token (null otherwise), and whether
   * the request continued a conversation (its prompt was likely cached here).
   */
  noteAnswer(
    model: string | null,
    serviceMs: number,
    counters: OllamaCounters,
    modelSize: number,
    ttftMs: number | null,
    continuesConversation: boolean,
  ): void {
    // What Ollama spent loading the model for this request, or keeping it queued for a slot, is
    // not service: routing predicts loads and slot waits on their own. Learned as service, a cold
    // start made a fast server look slow (its time to first token a whole load) for many answers.
    const loadMs = (counters.loadDurationNs ?? 0) / 1e6;
    const heldMs =
      loadMs +
      (queueWaitMs(
        counters.totalDurationNs,
        counters.loadDurationNs,
        counters.promptEvalDurationNs,
        counters.evalDurationNs,
      ) ?? 0);
    this.noteServiceTime(model, Math.max(1, serviceMs - heldMs));
    this.noteTokens(
      model,
      counters.evalCount,
      counters.evalDurationNs,
      counters.promptEvalCount,
      counters.promptEvalDurationNs,
      continuesConversation,
    );
    if (loadMs > REAL_LOAD_MS && model !== null) this.noteLoad(loadMs, modelSize);
    if (ttftMs !== null) this.ttftMs.add(Math.max(0, ttftMs - heldMs));
  }

  /** A model of `size` bytes took `ms` to load here. */
  noteLoad(ms: number, size: number): void {
    if (size > 0 && ms > 0) this.loadMsPerByte.add(ms / size);
  }

  /** Time from dispatch to the answer's first byte. */
  noteTtfb(ms: number): void {
    this.ttfbMs.add(ms);
  }

  noteServiceTime(model: string | null, ms: number): void {
    this.serviceMsAll.add(ms);
    if (model === null) return;
    let e = this.serviceMs.get(model);
    if (!e) this.serviceMs.set(model, (e = new Ewma(0.2)));
    e.add(ms);
  }

  /**
   * Learns from Ollama's counters in a final chunk. Prompt speed only through PrefillLearner: a
   * request that continued a conversation (`continuesConversation`) is judged as a likely cache hit.
   */
  noteTokens(
    model: string | null,
    evalCount: number | undefined,
    evalNs: number | undefined,
    promptCount: number | undefined,
    promptNs: number | undefined,
    continuesConversation = false,
  ): void {
    if (evalCount !== undefined && evalNs !== undefined && evalCount >= 2 && evalNs > 0) {
      const tps = evalCount / (evalNs / 1e9);
      // An early reading (noteEarlyRate) gives way to the first answer's own counters.
      if (this.earlyAll) {
        this.tokensPerSecAll.value = null;
        this.earlyAll = false;
      }
      this.tokensPerSecAll.add(tps);
      if (model !== null) {
        let e = this.tokensPerSec.get(model);
        if (!e || this.early.delete(model)) this.tokensPerSec.set(model, (e = new Ewma(0.2)));
        e.add(tps);
      }
    }
    this.promptMsPerToken.observe(promptCount, promptNs, continuesConversation);
  }

  /**
   * A token rate read from the first lines of a stream still running here (the proxy counts them),
   * for a model whose rate this backend has not shown yet: the first requests to a server are
   * judged by its real speed a moment after they start, not only once one has finished. Stands
   * until the first answer's own counters, which replace it (noteTokens).
   */
  noteEarlyRate(model: string, tokensPerS: number): void {
    if (!(tokensPerS > 0) || !Number.isFinite(tokensPerS)) return;
    if (this.tokensPerSec.get(model)?.value != null) return;
    const e = new Ewma(0.2);
    e.add(tokensPerS);
    this.tokensPerSec.set(model, e);
    this.early.add(model);
    if (this.tokensPerSecAll.value === null) {
      this.tokensPerSecAll.add(tokensPerS);
      this.earlyAll = true;
    }
  }

  /** Whether this backend's rate for `model` is unknown (neither an answer nor a stream has shown it). */
  rateUnknown(model: string): boolean {
    return this.tokensPerSec.get(model)?.value == null;
  }

  tokenRate(model: string | null): number | null {
    return (model !== null ? this.tokensPerSec.get(model)?.value : null) ?? this.tokensPerSecAll.value;
  }
}
