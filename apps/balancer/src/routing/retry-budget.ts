import { Inject, Injectable } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from '../fleet/backend-registry.service';

/**
 * Envoy's retry budget: retries in progress may be at most a share (RETRY_BUDGET_RATIO) of the
 * requests in flight, and always RETRY_BUDGET_MIN. A request counts once from its first retry until
 * a backend accepts it (answers with a success status), it waits in the balancer's queue (loading
 * no backend), or it finishes: the budget stops retry storms, and a retry that landed or waits its
 * turn is not one. The one owner of that count.
 */
export abstract class RetryBudget {
  /** Whether one more request may start retrying now. */
  abstract allows(): boolean;
  /** A request started retrying (call once per request). */
  abstract begin(): void;
  /** A request that had begun retrying finished. */
  abstract end(): void;
}

@Injectable()
export class LocalRetryBudget extends RetryBudget {
  private active = 0;

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
  ) {
    super();
  }

  /** Retries in progress now. */
  get retrying(): number {
    return this.active;
  }

  allows(): boolean {
    const inFlight = this.registry.totalInFlight();
    return this.active < Math.max(this.config.retryBudgetMin, Math.floor(inFlight * this.config.retryBudgetRatio));
  }

  begin(): void {
    this.active++;
  }

  end(): void {
    this.active--;
  }
}
