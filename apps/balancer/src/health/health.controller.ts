import { Controller, Get, Inject } from '@nestjs/common';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { BackendRegistry } from '../registry/backend-registry.service';
import { ShutdownState } from './shutdown-state';

/** Terminus probes of the balancer itself, for Kubernetes and compose healthchecks. */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicator: HealthIndicatorService,
    private readonly registry: BackendRegistry,
    @Inject(ShutdownState) private readonly shutdown: ShutdownState,
  ) {}

  /** Up while the process serves HTTP. */
  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([() => this.indicator.check('balancer').up()]);
  }

  /** Ready while at least one backend is healthy and the balancer is not draining. */
  @Get('ready')
  @HealthCheck()
  ready() {
    return this.health.check([
      () => {
        const i = this.indicator.check('backends');
        if (this.shutdown.draining) return i.down({ reason: 'draining for shutdown' });
        const healthy = this.registry.backends.filter((b) => b.health === 'healthy').length;
        const total = this.registry.backends.length;
        return healthy > 0 ? i.up({ healthy, total }) : i.down({ healthy, total, reason: 'no healthy backend' });
      },
    ]);
  }
}
