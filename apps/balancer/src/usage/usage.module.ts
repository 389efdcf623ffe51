import { Module } from '@nestjs/common';
import { UsageService, USAGE_CLOCK } from './usage.service';

/** Token usage and quotas per API key (config only below it; proxy, observability and admin read it). */
@Module({
  providers: [UsageService, { provide: USAGE_CLOCK, useValue: Date.now }],
  exports: [UsageService],
})
export class UsageModule {}
