import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { AdminTokenGuard, ViewGuard } from './admin/admin-token.guard';
import { OllamaErrorFilter } from './common-filter';
import { BalancerConfigModule } from './config/config.module';
import { DashboardModule } from './dashboard/dashboard.module';
import { HealthModule } from './health/health.module';
import { MetricsModule } from './metrics/metrics.module';
import { ProxyModule } from './proxy/proxy.module';
import { RoutingModule } from './routing/routing.module';
import { StatusController } from './status/status.controller';
import { StatusService } from './status/status.service';

@Module({
  imports: [BalancerConfigModule, ScheduleModule.forRoot(), RoutingModule, ProxyModule, HealthModule, MetricsModule, DashboardModule],
  controllers: [StatusController],
  providers: [StatusService, AdminTokenGuard, ViewGuard, { provide: APP_FILTER, useClass: OllamaErrorFilter }],
})
export class AppModule {}
