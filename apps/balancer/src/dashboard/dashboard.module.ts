import { Module } from '@nestjs/common';
import { AdminTokenGuard, ViewGuard } from '../admin/admin-token.guard';
import { MetricsModule } from '../metrics/metrics.module';
import { ProxyModule } from '../proxy/proxy.module';
import { RoutingModule } from '../routing/routing.module';
import { StatusService } from '../status/status.service';
import { DashboardController } from './dashboard.controller';
import { DashboardService } from './dashboard.service';

@Module({
  imports: [RoutingModule, MetricsModule, ProxyModule],
  controllers: [DashboardController],
  providers: [DashboardService, StatusService, AdminTokenGuard, ViewGuard],
})
export class DashboardModule {}
