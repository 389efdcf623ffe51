import { Module } from '@nestjs/common';
import { ProxyModule } from '../proxy/proxy.module';
import { RoutingModule } from '../routing/routing.module';
import { UsageModule } from '../usage/usage.module';
import { EventLog } from './event-log';
import { MetricsController } from './metrics.controller';
import { MetricsService } from './metrics.service';
import { UsageRecorder } from './usage-recorder';

/** Metrics, JSON logs and token usage per key, fed by the request records, routing decisions and fleet events. */
@Module({
  imports: [RoutingModule, ProxyModule, UsageModule],
  controllers: [MetricsController],
  providers: [MetricsService, EventLog, UsageRecorder],
  exports: [MetricsService],
})
export class ObservabilityModule {}
