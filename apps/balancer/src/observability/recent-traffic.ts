/** Upper bounds (ms) of the latency buckets kept per time slot; the last one catches the rest. */
const LATENCY_BOUNDS_MS = [25, 50, 100, 250, 500, 1000, 2000, 4000, 8000, 15000, 30000, 60000, 120000, Infinity];
const NB = LATENCY_BOUNDS_MS.length;
/** Fields per slot: count, errors, durationSum, ttfbSum, ttfbCount, evalTokens, evalNs. */
const F = 7;

export interface TrafficPoint {
  /** Start of the slot (epoch ms). */
  t: number;
  requests: number;
  errors: number;
  /** Requests per second over the slot. */
  rps: number;
  meanMs: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  meanTtfbMs: number | null;
  /** Generated tokens per second (sum of eval_count over the slot's length). */
  tokensPerS: number;
  /** Requests per backend (same order as `backends`). */
  perBackend: number[];
}

/**
 * Request rate and latency over the last minutes for the dashboard, in fixed time slots held in
 * preallocated typed arrays: recording a request allocates nothing.
 */
export class RecentTraffic {
  private readonly slots: number;
  private readonly slotIndex: Float64Array;
  private readonly fields: Float64Array;
  private readonly hist: Uint32Array;
  private perBackend: Uint32Array;
  private readonly backendIndex = new Map<string, number>();

  constructor(
    readonly backends: string[],
    readonly slotMs = 2000,
    readonly windowMs = 10 * 60_000,
  ) {
    this.slots = Math.ceil(windowMs / slotMs);
    this.slotIndex = new Float64Array(this.slots).fill(-1);
    this.fields = new Float64Array(this.slots * F);
    this.hist = new Uint32Array(this.slots * NB);
    this.perBackend = new Uint32Array(this.slots * Math.max(1, backends.length));
    backends.forEach((b, i) => this.backendIndex.set(b, i));
  }

  /**
   * A backend that joined at run time (discovery): its column starts empty. The per-backend counts
   * are re-laid out for the new width, so this allocates, once per joining backend, never per request.
   */
  addBackend(name: string): void {
    if (this.backendIndex.has(name)) return;
    const oldWidth = Math.max(1, this.backends.length);
    const old = this.perBackend;
    this.backends.push(name);
    this.backendIndex.set(name, this.backends.length - 1);
    const width = Math.max(1, this.backends.length);
    this.perBackend = new Uint32Array(this.slots * width);
    for (let i = 0; i < this.slots; i++) {
      for (let k = 0; k < this.backends.length - 1; k++) this.perBackend[i * width + k] = old[i * oldWidth + k];
    }
  }

  /** The slot for time `now`, cleared if it last held an older period. */
  private slot(now: number): number {
    const n = Math.floor(now / this.slotMs);
    const i = n % this.slots;
    if (this.slotIndex[i] !== n) {
      this.slotIndex[i] = n;
      this.fields.fill(0, i * F, i * F + F);
      this.hist.fill(0, i * NB, i * NB + NB);
      const nbk = Math.max(1, this.backends.length);
      this.perBackend.fill(0, i * nbk, i * nbk + nbk);
    }
    return i;
  }

  record(
    now: number,
    durationMs: number,
    ttfbMs: number | null,
    error: boolean,
    backend: string | null,
    evalTokens: number | undefined,
  ): void {
    const i = this.slot(now);
    const f = i * F;
    this.fields[f]++;
    if (error) this.fields[f + 1]++;
    this.fields[f + 2] += durationMs;
    if (ttfbMs !== null) {
      this.fields[f + 3] += ttfbMs;
      this.fields[f + 4]++;
    }
    if (evalTokens !== undefined) this.fields[f + 5] += evalTokens;
    let b = 0;
    while (b < NB - 1 && durationMs > LATENCY_BOUNDS_MS[b]) b++;
    this.hist[i * NB + b]++;
    if (backend !== null) {
      const k = this.backendIndex.get(backend);
      if (k !== undefined) this.perBackend[i * Math.max(1, this.backends.length) + k]++;
    }
  }

  /** Oldest first; slots with no traffic are zeros so a chart has an even time axis. */
  series(now = Date.now()): TrafficPoint[] {
    const out: TrafficPoint[] = [];
    const current = Math.floor(now / this.slotMs);
    const nbk = Math.max(1, this.backends.length);
    for (let n = current - this.slots + 1; n <= current; n++) {
      const i = ((n % this.slots) + this.slots) % this.slots;
      const t = n * this.slotMs;
      // The current slot is partial: rates use the time elapsed in it.
      const spanS = (n === current ? Math.max(1, now - t) : this.slotMs) / 1000;
      if (this.slotIndex[i] !== n) {
        out.push({
          t,
          requests: 0,
          errors: 0,
          rps: 0,
          meanMs: null,
          p50Ms: null,
          p95Ms: null,
          meanTtfbMs: null,
          tokensPerS: 0,
          perBackend: this.backends.map(() => 0),
        });
        continue;
      }
      const f = i * F;
      const count = this.fields[f];
      out.push({
        t,
        requests: count,
        errors: this.fields[f + 1],
        rps: round(count / spanS, 2),
        meanMs: count > 0 ? Math.round(this.fields[f + 2] / count) : null,
        p50Ms: this.quantile(i, count, 0.5),
        p95Ms: this.quantile(i, count, 0.95),
        meanTtfbMs: this.fields[f + 4] > 0 ? Math.round(this.fields[f + 3] / this.fields[f + 4]) : null,
        tokensPerS: round(this.fields[f + 5] / spanS, 1),
        perBackend: this.backends.map((_, k) => this.perBackend[i * nbk + k]),
      });
    }
    return out;
  }

  /** Upper bound of the bucket holding quantile q (the largest finite bound for the overflow bucket). */
  private quantile(i: number, count: number, q: number): number | null {
    if (count === 0) return null;
    const want = Math.ceil(count * q);
    let seen = 0;
    for (let b = 0; b < NB; b++) {
      seen += this.hist[i * NB + b];
      if (seen >= want) return Number.isFinite(LATENCY_BOUNDS_MS[b]) ? LATENCY_BOUNDS_MS[b] : LATENCY_BOUNDS_MS[NB - 2];
    }
    return null;
  }
}

function round(v: number, digits: number): number {
  const m = 10 ** digits;
  return Math.round(v * m) / m;
}
