import { Controller, Get, HttpCode, NotFoundException, Param, Post, UseGuards } from '@nestjs/common';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { FleetEvents } from '../fleet/fleet-events';
import { AdminTokenGuard, ViewGuard } from './admin-token.guard';
import { StatusService } from './status.service';

/**
 * The balancer's own surface lives under /balancer, a prefix Ollama's API never uses.
 * Status is read-only; cordon/uncordon are admin calls (ADMIN_TOKEN, off without one).
 */
@Controller('balancer')
export class StatusController {
  constructor(
    private readonly status: StatusService,
    private readonly registry: BackendRegistry,
    private readonly events: FleetEvents,
  ) {}

  @Get('status')
  @UseGuards(ViewGuard)
  getStatus() {
    return this.status.status();
  }

  @Post('admin/backends/:name/cordon')
  @HttpCode(200)
  @UseGuards(AdminTokenGuard)
  cordon(@Param('name') name: string) {
    return this.setCordon(name, true);
  }

  @Post('admin/backends/:name/uncordon')
  @HttpCode(200)
  @UseGuards(AdminTokenGuard)
  uncordon(@Param('name') name: string) {
    return this.setCordon(name, false);
  }

  private setCordon(name: string, on: boolean) {
    const b = this.registry.get(name);
    if (!b) throw new NotFoundException(`backend '${name}' is not configured`);
    b.cordoned = on;
    this.events.note(b, on ? 'cordoned' : 'uncordoned', 'admin');
    this.registry.capacityChanged();
    return this.status.backendView(b);
  }
}
