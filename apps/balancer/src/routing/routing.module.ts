import { Module } from '@nestjs/common';
import { FleetModule } from '../fleet/fleet.module';
import { RoutingService } from './routing.service';

@Module({
  imports: [FleetModule],
  providers: [RoutingService],
  exports: [FleetModule, RoutingService],
})
export class RoutingModule {}
