import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { Lifecycle } from '../lifecycle/lifecycle';

/** Terminus probes of the balancer itself, for Kubernetes and compose healthchecks. */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicator: HealthIndicatorService,
    private readonly registry: BackendRegistry,
    private readonly lifecycle: Lifecycle,
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
        if (this.lifecycle.state !== 'serving') return i.down({ reason: 'draining for shutdown' });
        const healthy = this.registry.backends.filter((b) => b.health === 'healthy' && b.retiring === null).length;
        const total = this.registry.backends.length;
        return healthy > 0 ? i.up({ healthy, total }) : i.down({ healthy, total, reason: 'no healthy backend' });
      },
    ]);
  }
}
