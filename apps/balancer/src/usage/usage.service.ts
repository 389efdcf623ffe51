import { Inject, Injectable, Optional } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { SHARED_STATE, SharedState } from '../shared-state';
import { TokenCounts } from './token-usage';
import { KeyQuota, KeyUsage, QuotaLimit, QuotaRefusal, UsageLedger } from './usage-ledger';

/** The clock quotas are judged by (ms). A provider so a test can move time past a window. */
export const USAGE_CLOCK = Symbol('USAGE_CLOCK');
export type UsageClock = () => number;

export interface KeyUsageView extends KeyUsage {
  class: string;
  weight: number;
}

/** The two windows quotas are judged on, the ledger's shapes (60 x 1 s, 1,440 x 1 min). */
const WINDOWS: readonly { limit: QuotaLimit; bucketMs: number; buckets: number }[] = [
  { limit: 'tokensPerMinute', bucketMs: 1000, buckets: 60 },
  { limit: 'tokensPerDay', bucketMs: 60_000, buckets: 1440 },
];

/**
 * Token usage and quotas per configured API key, for admission, the log line, metrics and the view.
 *
 * One process: the in-memory UsageLedger decides. With REDIS_URL (SHARED_STATE) each answer's
 * tokens are also added to the key's sliding windows in Redis (SharedQuotas.slide, the same shapes)
 * and the quota check reads those, so a key's quota holds across every replica. The read is one
 * pipelined round trip (both windows, auto-pipelined) bounded by REDIS_COMMAND_TIMEOUT_MS; when Redis is away or does not answer in
 * time, this replica's ledger decides against its share of the quota (quota / replicas alive, at
 * least 1 token), as the rate limiter does.
 */
@Injectable()
export class UsageService {
  private readonly ledger: UsageLedger;
  private readonly keyInfo: Map<string, { class: string; weight: number }>;
  private readonly quotas: Map<string, KeyQuota>;
  /** Whether any key has a token quota (admission skips the check otherwise). */
  readonly hasQuotas: boolean;
  /** Quota refusals by key and limit, for the metrics. */
  readonly refusals = new Map<string, number>();

  constructor(
    @Inject(BALANCER_CONFIG) config: BalancerConfig,
    @Inject(USAGE_CLOCK) private readonly clock: UsageClock,
    @Optional() @Inject(SHARED_STATE) private readonly shared: SharedState | null = null,
  ) {
    this.ledger = new UsageLedger(config.apiKeys);
    this.keyInfo = new Map(config.apiKeys.map((k) => [k.name, { class: k.priorityClass, weight: k.weight }]));
    this.quotas = new Map(config.apiKeys.map((k) => [k.name, k]));
    this.hasQuotas = config.apiKeys.some((k) => k.tokensPerMinute > 0 || k.tokensPerDay > 0);
  }

  /**
   * Null when the key may start a request now; else the quota it is over (answer 429). With shared
   * state up, a promise of the same (never rejects; at most REDIS_COMMAND_TIMEOUT_MS, then the
   * local ledger decides).
   */
  check(key: string | null): QuotaRefusal | null | Promise<QuotaRefusal | null> {
    if (!this.hasQuotas || key === null) return null;
    const q = this.quotas.get(key);
    if (q === undefined || (q.tokensPerMinute <= 0 && q.tokensPerDay <= 0)) return null;
    const shared = this.shared;
    if (shared === null) return this.counted(this.ledger.check(key, this.clock()));
    const local = () => this.counted(this.ledger.check(key, this.clock(), shared.link.replicasSeen));
    if (!shared.up) return local();
    return this.checkShared(shared, q).then((r) => this.counted(r), local);
  }

  private counted(r: QuotaRefusal | null): QuotaRefusal | null {
    if (r !== null) {
      const id = `${r.key}\u0000${r.limit}`;
      this.refusals.set(id, (this.refusals.get(id) ?? 0) + 1);
    }
    return r;
  }

  /**
   * The key's global windows against its quotas, in one pipelined round trip (rejects when Redis
   * cannot answer). Each window is asked to take 0 tokens within `allowed - 0.5`: refused exactly
   * when the window holds >= allowed tokens (the ledger's rule), and then its wait is until the
   * window holds fewer than `allowed` again; a take of 0 never adds anything.
   */
  private async checkShared(shared: SharedState, q: KeyQuota): Promise<QuotaRefusal | null> {
    const windows = WINDOWS.filter((w) => q[w.limit] > 0);
    const verdicts = await Promise.all(
      windows.map((w) => shared.quotas.slide(sharedName(q.name), 0, q[w.limit] - 0.5, w.bucketMs, w.buckets)),
    );
    for (let i = 0; i < windows.length; i++) {
      const v = verdicts[i];
      if (v.added) continue;
      const w = windows[i];
      const waitMs = v.resetMs >= 0 ? v.resetMs : w.bucketMs * w.buckets;
      return {
        key: q.name,
        limit: w.limit,
        allowed: q[w.limit],
        used: v.used,
        retryAfterS: Math.max(1, Math.ceil(waitMs / 1000)),
      };
    }
    return null;
  }

  /** A finished request's tokens (null: its answer carried none). Unknown keys are ignored. */
  record(key: string | null, counts: TokenCounts | null): void {
    if (key === null || !this.ledger.has(key)) return;
    this.ledger.record(key, counts?.promptTokens, counts?.outputTokens, this.clock());
    const shared = this.shared;
    if (shared === null || !shared.up) return;
    // Fire and forget (auto-pipelined): an answer finished while Redis is away counts only here.
    const p = clean(counts?.promptTokens);
    const o = clean(counts?.outputTokens);
    const unmetered = counts?.promptTokens === undefined && counts?.outputTokens === undefined;
    const ignore = () => undefined;
    try {
      const r = shared.link.redis();
      const h = totalsKey(shared, key);
      r.hincrby(h, 'requests', 1).catch((e) => shared.link.failed(e));
      if (unmetered) r.hincrby(h, 'unmetered', 1).catch(ignore);
      if (p > 0) r.hincrby(h, 'prompt', p).catch(ignore);
      if (o > 0) r.hincrby(h, 'output', o).catch(ignore);
      if (p + o > 0)
        for (const w of WINDOWS) shared.quotas.slide(sharedName(key), p + o, 0, w.bucketMs, w.buckets).catch(ignore);
    } catch {
      // Redis went away this instant: the local ledger has it.
    }
  }

  /** Every configured key's usage on this replica, or one key's (the metrics: each replica its own). */
  view(only?: string): KeyUsageView[] {
    return this.ledger.view(this.clock(), only).map((u) => ({ ...u, ...this.keyInfo.get(u.key)! }));
  }

  /** Whether REDIS_URL is set (usage and quotas are shared by the replicas while Redis is up). */
  get sharedState(): boolean {
    return this.shared !== null;
  }

  /**
   * /balancer/usage: with shared state up, every replica's totals and windows from Redis (counted
   * since Redis holds them); otherwise, or when Redis does not answer in time, this replica's view.
   */
  async globalView(only?: string): Promise<{ scope: 'global' | 'replica'; keys: KeyUsageView[] }> {
    const local = this.view(only);
    const shared = this.shared;
    if (shared === null || !shared.up) return { scope: 'replica', keys: local };
    try {
      const keys = await Promise.all(
        local.map(async (u): Promise<KeyUsageView> => {
          const [totals, minute, day] = await Promise.all([
            shared.link.redis().hgetall(totalsKey(shared, u.key)),
            ...WINDOWS.map((w) => shared.quotas.slide(sharedName(u.key), 0, 0, w.bucketMs, w.buckets)),
          ] as const);
          const n = (f: string) => Number((totals as Record<string, string>)[f] ?? 0) || 0;
          return {
            ...u,
            requests: n('requests'),
            unmeteredRequests: n('unmetered'),
            promptTokens: n('prompt'),
            outputTokens: n('output'),
            lastMinute: { ...u.lastMinute, tokens: minute.used },
            lastDay: { ...u.lastDay, tokens: day.used },
          };
        }),
      );
      return { scope: 'global', keys };
    } catch (e) {
      shared.link.failed(e);
      return { scope: 'replica', keys: local };
    }
  }
}

function sharedName(key: string): string {
  return `tok:${key}`;
}

function totalsKey(shared: SharedState, key: string): string {
  return `${shared.link.prefix}usage:${key}`;
}

function clean(v: number | undefined): number {
  return v !== undefined && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0;
}
