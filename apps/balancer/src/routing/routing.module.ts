import { Module } from '@nestjs/common';
import { FleetModule } from '../fleet/fleet.module';
import { LeaseLedger, LocalLeaseLedger } from './lease-ledger';
import { FairPlacementQueue } from './fair-placement-queue';
import { PlacementQueue } from './placement-queue';
import { LocalRetryBudget, RetryBudget } from './retry-budget';
import { RoutingService } from './routing.service';
import { LocalSessionAffinity, SessionAffinity } from './session-affinity';

/**
 * place(request): policies, the placement queue, session affinity, in-flight leases and the retry
 * budget. Each of the last four is an abstract class with this process's implementation bound here;
 * another (shared by several replicas) is one `useClass` away.
 */
@Module({
  imports: [FleetModule],
  providers: [
    RoutingService,
    { provide: LeaseLedger, useClass: LocalLeaseLedger },
    { provide: PlacementQueue, useClass: FairPlacementQueue },
    { provide: SessionAffinity, useClass: LocalSessionAffinity },
    { provide: RetryBudget, useClass: LocalRetryBudget },
  ],
  exports: [FleetModule, RoutingService, PlacementQueue, RetryBudget],
})
export class RoutingModule {}
