import { Controller, Get, Header, UseGuards } from '@nestjs/common';
import { Registry } from 'prom-client';
import { AgentTokenGuard } from '../auth/agent-token.guard';
import { MetricsService } from './metrics.service';

@Controller()
@UseGuards(AgentTokenGuard)
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  @Get('metrics')
  @Header('Content-Type', Registry.PROMETHEUS_CONTENT_TYPE)
  async get(): Promise<string> {
    return (await this.metrics.render()).body;
  }
}
