/**
 * Tokens used per API key: totals, and sliding windows of the last minute and the last day that
 * token quotas are judged on. Pure and deterministic (the caller passes `now`), so the state can
 * later move to a shared store behind the same methods.
 *
 * A window is a ring of buckets (60 of 1 s for the minute, 1,440 of 1 min for the day) with a
 * running sum; recording and checking cost O(1) amortised. Only a refusal walks the buckets, to say
 * when enough of them expire for the key to be under its limit again.
 */

export interface KeyQuota {
  name: string;
  /** 0 = unlimited. */
  tokensPerMinute: number;
  /** 0 = unlimited. */
  tokensPerDay: number;
}

export type QuotaLimit = 'tokensPerMinute' | 'tokensPerDay';

export interface QuotaRefusal {
  key: string;
  limit: QuotaLimit;
  /** The configured limit. */
  allowed: number;
  /** Tokens used in the window now. */
  used: number;
  /** Seconds until enough of the window expires for the key to be under the limit (>= 1). */
  retryAfterS: number;
}

export interface KeyUsage {
  key: string;
  requests: number;
  /** Answers that carried no token counts (e.g. an OpenAI stream without stream_options.include_usage). */
  unmeteredRequests: number;
  promptTokens: number;
  outputTokens: number;
  lastMinute: { tokens: number; limit: number | null };
  lastDay: { tokens: number; limit: number | null };
}

/** A sliding window of `n` buckets of `bucketMs` each, with a running sum. */
export class SlidingWindow {
  private readonly counts: Float64Array;
  /** Index (time / bucketMs) of the oldest bucket that may still hold counts. */
  private first = 0;
  private total = 0;

  constructor(
    readonly bucketMs: number,
    readonly n: number,
  ) {
    this.counts = new Float64Array(n);
  }

  private advance(now: number): number {
    const idx = Math.floor(now / this.bucketMs);
    const oldest = idx - this.n + 1;
    if (oldest - this.first >= this.n) {
      this.counts.fill(0);
      this.total = 0;
    } else {
      for (let b = this.first; b < oldest; b++) {
        const slot = b % this.n;
        this.total -= this.counts[slot];
        this.counts[slot] = 0;
      }
    }
    if (oldest > this.first) this.first = oldest;
    // Floating sums of integers stay exact well past any day's token count; clamp the dust anyway.
    if (this.total < 1e-9) this.total = Math.max(0, this.total);
    return idx;
  }

  add(now: number, v: number): void {
    const idx = this.advance(now);
    this.counts[idx % this.n] += v;
    this.total += v;
  }

  sum(now: number): number {
    this.advance(now);
    return this.total;
  }

  /** When (ms) the window's sum first drops below `limit`, as its oldest buckets expire. */
  freesBelowAt(now: number, limit: number): number {
    const idx = this.advance(now);
    let left = this.total;
    if (left < limit) return now;
    for (let b = this.first; b <= idx; b++) {
      left -= this.counts[b % this.n];
      // Bucket b leaves the window when the window's oldest bucket is b + 1.
      if (left < limit) return (b + this.n) * this.bucketMs;
    }
    return (idx + this.n) * this.bucketMs;
  }
}

interface Entry {
  quota: KeyQuota;
  requests: number;
  unmetered: number;
  prompt: number;
  output: number;
  minute: SlidingWindow;
  day: SlidingWindow;
}

export class UsageLedger {
  private readonly entries = new Map<string, Entry>();

  /** Keys come from configuration only: nothing a client sends adds an entry. */
  constructor(keys: readonly KeyQuota[]) {
    for (const q of keys) {
      if (this.entries.has(q.name)) continue;
      this.entries.set(q.name, {
        quota: q,
        requests: 0,
        unmetered: 0,
        prompt: 0,
        output: 0,
        minute: new SlidingWindow(1000, 60),
        day: new SlidingWindow(60_000, 1440),
      });
    }
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** One finished request's tokens (undefined counts: the answer carried none). */
  record(key: string, promptTokens: number | undefined, outputTokens: number | undefined, now: number): void {
    const e = this.entries.get(key);
    if (e === undefined) return;
    e.requests++;
    if (promptTokens === undefined && outputTokens === undefined) {
      e.unmetered++;
      return;
    }
    const p = clean(promptTokens);
    const o = clean(outputTokens);
    e.prompt += p;
    e.output += o;
    if (p + o > 0) {
      e.minute.add(now, p + o);
      e.day.add(now, p + o);
    }
  }

  /**
   * Whether the key may start another request now: null, or the quota it is over. A request that
   * already started is never cut; the next one is refused until the window frees enough.
   * `share` > 1 judges against 1/share of each quota (at least 1 token): a replica's part of a
   * quota shared by `share` replicas while their shared store is away.
   */
  check(key: string | null, now: number, share = 1): QuotaRefusal | null {
    if (key === null) return null;
    const e = this.entries.get(key);
    if (e === undefined) return null;
    const q =
      share > 1
        ? {
            tokensPerMinute: shareOf(e.quota.tokensPerMinute, share),
            tokensPerDay: shareOf(e.quota.tokensPerDay, share),
          }
        : e.quota;
    if (q.tokensPerMinute > 0) {
      const used = e.minute.sum(now);
      if (used >= q.tokensPerMinute)
        return refusal(
          key,
          'tokensPerMinute',
          q.tokensPerMinute,
          used,
          e.minute.freesBelowAt(now, q.tokensPerMinute),
          now,
        );
    }
    if (q.tokensPerDay > 0) {
      const used = e.day.sum(now);
      if (used >= q.tokensPerDay)
        return refusal(key, 'tokensPerDay', q.tokensPerDay, used, e.day.freesBelowAt(now, q.tokensPerDay), now);
    }
    return null;
  }

  /** Every key's usage, in configuration order (or one key's). */
  view(now: number, only?: string): KeyUsage[] {
    const out: KeyUsage[] = [];
    for (const [key, e] of this.entries) {
      if (only !== undefined && key !== only) continue;
      out.push({
        key,
        requests: e.requests,
        unmeteredRequests: e.unmetered,
        promptTokens: e.prompt,
        outputTokens: e.output,
        lastMinute: { tokens: e.minute.sum(now), limit: e.quota.tokensPerMinute || null },
        lastDay: { tokens: e.day.sum(now), limit: e.quota.tokensPerDay || null },
      });
    }
    return out;
  }
}

function shareOf(limit: number, share: number): number {
  return limit <= 0 ? 0 : Math.max(1, Math.floor(limit / share));
}

function clean(v: number | undefined): number {
  return v !== undefined && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0;
}

function refusal(
  key: string,
  limit: QuotaLimit,
  allowed: number,
  used: number,
  freeAt: number,
  now: number,
): QuotaRefusal {
  return { key, limit, allowed, used, retryAfterS: Math.max(1, Math.ceil((freeAt - now) / 1000)) };
}

/** The message a refused client reads (Ollama's or OpenAI's error shape carries it). */
export function quotaMessage(r: QuotaRefusal): string {
  const per = r.limit === 'tokensPerMinute' ? 'minute' : 'day';
  return `token quota exceeded for key '${r.key}': ${r.used} of ${r.allowed} tokens per ${per} used (${r.limit}); retry in ${r.retryAfterS} s`;
}
