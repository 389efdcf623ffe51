import { Inject, Injectable } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { Backend } from './backend';
import { BackendRegistry } from './backend-registry.service';
import { FleetEvents } from './fleet-events';

const MAX_EJECTION_MS = 5 * 60_000;

/**
 * Passive health, outlier detection from live traffic (Envoy's consecutive-5xx): a backend that
 * fails EJECT_CONSECUTIVE_FAILURES requests in a row is ejected for EJECT_BASE_MS x 2^(ejections-1),
 * capped, and returns with a slow start. Never more than EJECT_MAX_PERCENT of backends at once,
 * and never the last backend still available (unhealthy and cordoned ones count as gone).
 */
@Injectable()
export class OutlierDetection {
  ejectionsTotal = 0;

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly events: FleetEvents,
  ) {}

  success(b: Backend): void {
    if (b.consecutiveErrors !== 0) b.consecutiveErrors = 0;
    // A backend that has served well for a while since its last ejection starts its back-off afresh.
    if (b.ejections > 0 && Date.now() - b.ejectedUntil > this.config.ejectBaseMs * 2) b.ejections = 0;
  }

  failure(b: Backend, why: string): void {
    b.consecutiveErrors++;
    if (b.consecutiveErrors < this.config.ejectConsecutiveFailures) return;
    const now = Date.now();
    if (b.isEjected(now)) return;
    const ejected = this.registry.backends.filter((x) => x.isEjected(now)).length;
    const maxEjected = Math.min(
      this.registry.backends.length - 1,
      Math.floor((this.registry.backends.length * this.config.ejectMaxPercent) / 100),
    );
    if (ejected >= maxEjected) return;
    // Nor the last backend that can still serve (others may be down by probe or cordoned).
    if (!this.registry.backends.some((x) => x !== b && x.isAvailable(now))) return;
    b.ejections++;
    this.ejectionsTotal++;
    const ms = Math.min(MAX_EJECTION_MS, this.config.ejectBaseMs * 2 ** (b.ejections - 1));
    b.ejectedUntil = now + ms;
    b.slowStartFrom = b.ejectedUntil;
    b.consecutiveErrors = 0;
    this.events.note(b, 'ejected', `${why}; for ${ms} ms`);
    setTimeout(() => this.registry.capacityChanged(), ms + 5).unref();
  }
}
