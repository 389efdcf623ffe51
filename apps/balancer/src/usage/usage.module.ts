import { Module } from '@nestjs/common';
import { FleetModule } from '../fleet/fleet.module';
import { UsageService, USAGE_CLOCK } from './usage.service';

/**
 * Token usage and quotas per API key (config below it, and with REDIS_URL the shared state from the
 * fleet module; proxy, observability and admin read it).
 */
@Module({
  imports: [FleetModule],
  providers: [UsageService, { provide: USAGE_CLOCK, useValue: Date.now }],
  exports: [UsageService],
})
export class UsageModule {}
