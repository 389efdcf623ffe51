import { Module } from '@nestjs/common';
import { BackendRegistry } from '../registry/backend-registry.service';
import { PassiveHealth } from '../health/passive-health.service';
import { RoutingService } from './routing.service';

@Module({
  providers: [BackendRegistry, RoutingService, PassiveHealth],
  exports: [BackendRegistry, RoutingService, PassiveHealth],
})
export class RoutingModule {}
