import { Controller, Get, Header, Res, UseGuards } from '@nestjs/common';
import type { Response } from 'express';
import { ViewGuard } from './admin-token.guard';
import { DASHBOARD_HTML, DASHBOARD_ETAG } from './dashboard.page';
import { DashboardService } from './dashboard.service';

/**
 * A live view of the cluster for people, under /balancer (a prefix Ollama never uses), behind
 * ADMIN_TOKEN when one is set. The page carries `?token=` on to its own calls.
 */
@Controller('balancer')
@UseGuards(ViewGuard)
export class DashboardController {
  constructor(private readonly dashboard: DashboardService) {}

  @Get('dashboard')
  page(@Res() res: Response): void {
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('ETag', DASHBOARD_ETAG);
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader(
      'Content-Security-Policy',
      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
    );
    if (res.req.headers['if-none-match'] === DASHBOARD_ETAG) {
      res.status(304).end();
      return;
    }
    res.end(DASHBOARD_HTML);
  }

  /** One snapshot as JSON: what the event stream sends, for polling clients and scripts. */
  @Get('dashboard/data')
  @Header('Cache-Control', 'no-store')
  data() {
    return this.dashboard.snapshot();
  }

  /** Server-sent events: a snapshot at once, then one a second. */
  @Get('events')
  events(@Res() res: Response): void {
    this.dashboard.subscribe(res);
  }
}
