import { Module } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { FleetModule } from '../fleet/fleet.module';
import { SHARED_STATE, SharedState } from '../shared-state';
import { LeaseLedger, LocalLeaseLedger } from './lease-ledger';
import { FairPlacementQueue } from './fair-placement-queue';
import { PlacementQueue } from './placement-queue';
import { ResumeBudget } from './resume-budget';
import { LocalRetryBudget, RetryBudget } from './retry-budget';
import { Rewarm } from './rewarm';
import { RoutingService } from './routing.service';
import { LocalSessionAffinity, SessionAffinity } from './session-affinity';
import { SharedDemandSync } from './shared-demand-sync';
import { SharedLeaseLedger } from './shared-lease-ledger';
import { SharedPlacementQueue } from './shared-placement-queue';
import { SharedSessionAffinity } from './shared-session-affinity';

/**
 * place(request): policies, the placement queue, session affinity, in-flight leases and the retry
 * budget. Each of the last four is an abstract class with this process's implementation bound here;
 * with REDIS_URL (SHARED_STATE), the ledger, the queue and the pins are the ones shared by every
 * replica through Redis. The retry budget stays per replica (a share of its own requests). Rewarm
 * loads a model a load evicted, still in use and loaded nowhere, where it fits beside the others
 * (or another copy of one its holders cannot keep up with), claiming it in Redis first.
 * SharedDemandSync adds the other replicas' per-model demand to this one's (REDIS_URL).
 */
@Module({
  imports: [FleetModule],
  providers: [
    RoutingService,
    {
      provide: LeaseLedger,
      inject: [BackendRegistry, SHARED_STATE],
      useFactory: (registry: BackendRegistry, shared: SharedState | null) =>
        shared ? new SharedLeaseLedger(registry, shared) : new LocalLeaseLedger(registry),
    },
    {
      provide: SessionAffinity,
      inject: [SHARED_STATE],
      useFactory: (shared: SharedState | null) =>
        shared ? new SharedSessionAffinity(shared) : new LocalSessionAffinity(),
    },
    {
      provide: PlacementQueue,
      inject: [BALANCER_CONFIG, BackendRegistry, LeaseLedger, SessionAffinity, SHARED_STATE, ModuleRef],
      useFactory: (
        config: BalancerConfig,
        registry: BackendRegistry,
        ledger: LeaseLedger,
        affinity: SessionAffinity,
        shared: SharedState | null,
        moduleRef: ModuleRef,
      ) =>
        shared
          ? new SharedPlacementQueue(config, registry, ledger, affinity, shared, moduleRef)
          : new FairPlacementQueue(config),
    },
    { provide: RetryBudget, useClass: LocalRetryBudget },
    ResumeBudget,
    Rewarm,
    SharedDemandSync,
  ],
  exports: [FleetModule, RoutingService, PlacementQueue, RetryBudget, ResumeBudget, Rewarm],
})
export class RoutingModule {}
