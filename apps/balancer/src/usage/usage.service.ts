import { Inject, Injectable } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { TokenCounts } from './token-usage';
import { KeyUsage, QuotaRefusal, UsageLedger } from './usage-ledger';

/** The clock quotas are judged by (ms). A provider so a test can move time past a window. */
export const USAGE_CLOCK = Symbol('USAGE_CLOCK');
export type UsageClock = () => number;

export interface KeyUsageView extends KeyUsage {
  class: string;
  weight: number;
}

/** Token usage and quotas per configured API key, for admission, the log line, metrics and the view. */
@Injectable()
export class UsageService {
  private readonly ledger: UsageLedger;
  private readonly keyInfo: Map<string, { class: string; weight: number }>;
  /** Whether any key has a token quota (admission skips the check otherwise). */
  readonly hasQuotas: boolean;
  /** Quota refusals by key and limit, for the metrics. */
  readonly refusals = new Map<string, number>();

  constructor(
    @Inject(BALANCER_CONFIG) config: BalancerConfig,
    @Inject(USAGE_CLOCK) private readonly clock: UsageClock,
  ) {
    this.ledger = new UsageLedger(config.apiKeys);
    this.keyInfo = new Map(config.apiKeys.map((k) => [k.name, { class: k.priorityClass, weight: k.weight }]));
    this.hasQuotas = config.apiKeys.some((k) => k.tokensPerMinute > 0 || k.tokensPerDay > 0);
  }

  /** Null when the key may start a request now; else the quota it is over (answer 429). */
  check(key: string | null): QuotaRefusal | null {
    if (!this.hasQuotas || key === null) return null;
    const r = this.ledger.check(key, this.clock());
    if (r !== null) {
      const id = `${r.key}\u0000${r.limit}`;
      this.refusals.set(id, (this.refusals.get(id) ?? 0) + 1);
    }
    return r;
  }

  /** A finished request's tokens (null: its answer carried none). Unknown keys are ignored. */
  record(key: string | null, counts: TokenCounts | null): void {
    if (key === null) return;
    this.ledger.record(key, counts?.promptTokens, counts?.outputTokens, this.clock());
  }

  /** Every configured key's usage, or one key's. */
  view(only?: string): KeyUsageView[] {
    return this.ledger.view(this.clock(), only).map((u) => ({ ...u, ...this.keyInfo.get(u.key)! }));
  }
}
