import { Module } from '@nestjs/common';
import { ObservabilityModule } from '../observability/observability.module';
import { ProxyModule } from '../proxy/proxy.module';
import { UsageModule } from '../usage/usage.module';
import { AdminTokenGuard, ViewGuard } from './admin-token.guard';
import { DashboardController } from './dashboard.controller';
import { DashboardService } from './dashboard.service';
import { StatusController } from './status.controller';
import { StatusService } from './status.service';
import { UsageController } from './usage.controller';

/** Everything under /balancer: the status view, the dashboard and its feed, cordon/uncordon, usage per key. */
@Module({
  imports: [ProxyModule, ObservabilityModule, UsageModule],
  controllers: [StatusController, DashboardController, UsageController],
  providers: [StatusService, DashboardService, AdminTokenGuard, ViewGuard],
})
export class AdminModule {}
