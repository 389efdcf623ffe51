import { Counter, CounterConfiguration, Histogram, HistogramConfiguration } from 'prom-client';

/**
 * Per-request counters and histograms that cost a few additions per request.
 *
 * prom-client hashes and validates the label set on every `inc`/`observe`, even through a child
 * from `labels()`; with ten series touched per request that was about 5 % of the balancer's
 * throughput on small requests. Here each label set is resolved once to a plain object that
 * accumulates numbers, and the prom-client metric (same name, help, type, labels, buckets, so
 * `/metrics` reads exactly as before) is filled from those objects when it is scraped.
 */

/** One counter series: `inc` is an addition. */
export class CounterSeries {
  value = 0;
  touched = false;
  constructor(readonly labels: Record<string, string>) {}

  inc(v = 1): void {
    this.value += v;
    this.touched = true;
  }
}

/** One histogram series: `observe` finds the bucket and adds. */
export class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    this.sum += v;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]) {
        this.counts[i]++;
        return;
      }
    }
  }
}

function labelsOf(names: readonly string[], values: string[]): Record<string, string> {
  if (values.length !== names.length)
    throw new Error(`expected ${names.length} label values (${names.join(', ')}), got ${values.length}`);
  const out: Record<string, string> = {};
  names.forEach((n, i) => (out[n] = values[i]));
  return out;
}

export class FastCounter<L extends string> {
  readonly metric: Counter<L>;
  private readonly series = new Map<string, CounterSeries>();

  constructor(private readonly config: CounterConfiguration<L> & { labelNames: readonly L[] }) {
    const series = this.series;
    this.metric = new Counter<L>({
      ...config,
      collect() {
        this.reset();
        for (const s of series.values()) if (s.touched) this.inc(s.labels as Partial<Record<L, string>>, s.value);
      },
    });
  }

  /** The series for these label values (in `labelNames` order), made on first use. */
  labels(...values: string[]): CounterSeries {
    const key = values.join('\u0000');
    let s = this.series.get(key);
    if (s === undefined) this.series.set(key, (s = new CounterSeries(labelsOf(this.config.labelNames, values))));
    return s;
  }
}

export class FastHistogram<L extends string> {
  readonly metric: Histogram<L>;
  private readonly series = new Map<string, HistogramSeries>();
  private readonly bounds: readonly number[];

  constructor(private readonly config: HistogramConfiguration<L> & { labelNames: readonly L[]; buckets: number[] }) {
    const series = this.series;
    const bounds = (this.bounds = [...config.buckets].sort((a, b) => a - b));
    this.metric = new Histogram<L>({
      ...config,
      buckets: [...bounds],
      collect() {
        // prom-client keeps one entry per label set, {labels, bucketValues: {bound: n}, sum, count}
        // (non-cumulative buckets); zero() makes it, and the entry is found by its labels object.
        this.reset();
        const byLabels = new Map<Record<string, string>, HistogramSeries>();
        for (const s of series.values()) {
          if (s.count === 0) continue;
          byLabels.set(s.labels, s);
          this.zero(s.labels as Partial<Record<L, string>>);
        }
        for (const entry of Object.values((this as unknown as { hashMap: Record<string, HistogramEntry> }).hashMap)) {
          const s = byLabels.get(entry.labels);
          if (s === undefined) continue;
          entry.sum = s.sum;
          entry.count = s.count;
          bounds.forEach((b, i) => (entry.bucketValues[b] = s.counts[i]));
        }
      },
    });
  }

  labels(...values: string[]): HistogramSeries {
    const key = values.join('\u0000');
    let s = this.series.get(key);
    if (s === undefined)
      this.series.set(key, (s = new HistogramSeries(labelsOf(this.config.labelNames, values), this.bounds)));
    return s;
  }
}

interface HistogramEntry {
  labels: Record<string, string>;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}
