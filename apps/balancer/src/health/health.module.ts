import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { FleetModule } from '../fleet/fleet.module';
import { HealthController } from './health.controller';

/** Terminus probes of the balancer itself (liveness, readiness). */
@Module({
  imports: [TerminusModule.forRoot({ logger: false }), FleetModule],
  controllers: [HealthController],
})
export class HealthModule {}
