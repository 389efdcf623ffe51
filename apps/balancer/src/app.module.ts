import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { AdminModule } from './admin/admin.module';
import { BalancerConfigModule } from './config/config.module';
import { HealthModule } from './health/health.module';
import { OllamaErrorFilter } from './http/ollama-error.filter';
import { LifecycleModule } from './lifecycle/lifecycle';
import { ObservabilityModule } from './observability/observability.module';
import { ProxyModule } from './proxy/proxy.module';

@Module({
  imports: [
    BalancerConfigModule,
    LifecycleModule,
    ScheduleModule.forRoot(),
    ProxyModule,
    ObservabilityModule,
    AdminModule,
    HealthModule,
  ],
  providers: [{ provide: APP_FILTER, useClass: OllamaErrorFilter }],
})
export class AppModule {}
