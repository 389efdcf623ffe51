import { Module } from '@nestjs/common';
import { ObservabilityModule } from '../observability/observability.module';
import { ProxyModule } from '../proxy/proxy.module';
import { AdminTokenGuard, ViewGuard } from './admin-token.guard';
import { DashboardController } from './dashboard.controller';
import { DashboardService } from './dashboard.service';
import { StatusController } from './status.controller';
import { StatusService } from './status.service';

/** Everything under /balancer: the status view, the dashboard and its feed, cordon/uncordon. */
@Module({
  imports: [ProxyModule, ObservabilityModule],
  controllers: [StatusController, DashboardController],
  providers: [StatusService, DashboardService, AdminTokenGuard, ViewGuard],
})
export class AdminModule {}
