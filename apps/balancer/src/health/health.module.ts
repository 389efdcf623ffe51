import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { ProxyModule } from '../proxy/proxy.module';
import { RoutingModule } from '../routing/routing.module';
import { BackendPoller } from './backend-poller.service';
import { HealthController } from './health.controller';
import { ShutdownState } from './shutdown-state';

@Module({
  imports: [TerminusModule.forRoot({ logger: false }), RoutingModule, ProxyModule],
  controllers: [HealthController],
  providers: [BackendPoller, ShutdownState],
  exports: [BackendPoller, ShutdownState],
})
export class HealthModule {}
