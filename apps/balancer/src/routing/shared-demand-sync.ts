import { Inject, Injectable, OnApplicationShutdown, OnModuleInit, Optional } from '@nestjs/common';
import { SHARED_STATE, SharedState } from '../shared-state';
import { RoutingService } from './routing.service';

/**
 * With REDIS_URL, every heartbeat period: writes this replica's per-model demand to Redis and adds
 * the other replicas' to what its routing reads (Demand.setOthers). Behind N replicas each sees about
 * 1/N of a model's requests; without this, an overload would read as 1/N of one and no copy would
 * be loaded for it. While Redis is away each replica goes by its own traffic.
 */
@Injectable()
export class SharedDemandSync implements OnModuleInit, OnApplicationShutdown {
  private timer: NodeJS.Timeout | null = null;
  private exchanging = false;

  constructor(
    private readonly routing: RoutingService,
    @Optional() @Inject(SHARED_STATE) private readonly shared: SharedState | null = null,
  ) {}

  onModuleInit(): void {
    if (!this.shared) return;
    this.timer = setInterval(() => void this.exchange(), this.shared.link.config.heartbeatMs);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async exchange(): Promise<void> {
    const shared = this.shared;
    if (!shared || this.exchanging) return;
    if (!shared.up) {
      this.routing.demand.setOthers(new Map());
      return;
    }
    this.exchanging = true;
    try {
      const now = Date.now();
      const others = await shared.demand.exchange(this.routing.demand.readings(now), shared.link.config.leaseMs * 2);
      this.routing.demand.setOthers(others);
    } catch {
      this.routing.demand.setOthers(new Map());
    } finally {
      this.exchanging = false;
    }
  }
}
