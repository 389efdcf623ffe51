import { Controller, Get, Header, Res } from '@nestjs/common';
import type { Response } from 'express';
import { MetricsService } from './metrics.service';

/**
 * Prometheus scrape endpoint. Open even when ADMIN_TOKEN is set (the Prometheus norm): it carries
 * backend and model names and counts, never a URL credential, key, prompt or token.
 */
@Controller()
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  @Get('metrics')
  @Header('Cache-Control', 'no-store')
  async scrape(@Res() res: Response): Promise<void> {
    const body = await this.metrics.scrape();
    res.setHeader('Content-Type', this.metrics.registry.contentType);
    res.end(body);
  }
}
