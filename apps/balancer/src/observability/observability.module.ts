import { Module } from '@nestjs/common';
import { ProxyModule } from '../proxy/proxy.module';
import { RoutingModule } from '../routing/routing.module';
import { EventLog } from './event-log';
import { MetricsController } from './metrics.controller';
import { MetricsService } from './metrics.service';

/** Metrics and JSON logs, fed by the request records, routing decisions and fleet events. */
@Module({
  imports: [RoutingModule, ProxyModule],
  controllers: [MetricsController],
  providers: [MetricsService, EventLog],
  exports: [MetricsService],
})
export class ObservabilityModule {}
