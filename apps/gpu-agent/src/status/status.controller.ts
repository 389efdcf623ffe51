import { Controller, Get, UseGuards } from '@nestjs/common';
import type { AgentStatusDto } from '@app/common';
import { AgentTokenGuard } from '../auth/agent-token.guard';
import { StatusService } from './status.service';

@Controller()
@UseGuards(AgentTokenGuard)
export class StatusController {
  constructor(private readonly status: StatusService) {}

  @Get('status')
  get(): AgentStatusDto {
    return this.status.status();
  }
}
