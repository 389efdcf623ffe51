import { Injectable, OnModuleDestroy } from '@nestjs/common';
import type { ServerResponse } from 'http';
import { MetricsService } from '../observability/metrics.service';
import { StatusService } from './status.service';

/** How often the live feed pushes a snapshot to open dashboards. */
export const FEED_INTERVAL_MS = 1000;
/** Traffic shown on the dashboard's charts. */
const CHART_WINDOW_MS = 5 * 60_000;
const MIN_CHART_MS = 60_000;

/**
 * The dashboard's data: the status view plus request rate and latency over the last minutes. One
 * timer builds one snapshot per tick and writes it to every open event stream, so ten open
 * dashboards cost what one does.
 */
@Injectable()
export class DashboardService implements OnModuleDestroy {
  private readonly clients = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly status: StatusService,
    private readonly metrics: MetricsService,
  ) {}

  snapshot() {
    const now = Date.now();
    const all = this.metrics.traffic.series(now).filter((p) => p.t > now - CHART_WINDOW_MS);
    // The chart spans the traffic seen so far (at least a minute), so a young cluster fills it.
    const first = all.findIndex((p) => p.requests > 0);
    const from = Math.min(
      first < 0 ? all.length : first,
      all.length - Math.ceil(MIN_CHART_MS / this.metrics.traffic.slotMs),
    );
    const series = all.slice(Math.max(0, from));
    // Headline figures over the last 30 s of complete-enough slots.
    const recent = series.filter((p) => p.t > now - 30_000);
    const spanS = Math.max(1, Math.min(30, (now - (recent[0]?.t ?? now)) / 1000));
    const requests = recent.reduce((s, p) => s + p.requests, 0);
    const tokens = recent.reduce((s, p) => s + p.tokensPerS * (this.metrics.traffic.slotMs / 1000), 0);
    const p95 = recent.reduce<number | null>((m, p) => (p.p95Ms === null ? m : Math.max(m ?? 0, p.p95Ms)), null);
    return {
      ...this.status.status(),
      traffic: {
        slotMs: this.metrics.traffic.slotMs,
        backends: this.metrics.traffic.backends,
        series,
        last30s: {
          rps: Math.round((requests / spanS) * 100) / 100,
          p95Ms: p95,
          tokensPerS: Math.round((tokens / spanS) * 10) / 10,
          requests,
        },
      },
    };
  }

  /** Opens a server-sent event stream on `res` and sends a snapshot at once, then every tick. */
  subscribe(res: ServerResponse): void {
    if (this.closed) {
      res.writeHead(503, { 'Content-Type': 'text/plain' });
      res.end('shutting down');
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.socket?.setNoDelay(true);
    res.write(`retry: 2000\ndata: ${JSON.stringify(this.snapshot())}\n\n`);
    this.clients.add(res);
    res.once('close', () => {
      this.clients.delete(res);
      if (this.clients.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    });
    if (this.timer === null) {
      this.timer = setInterval(() => this.broadcast(), FEED_INTERVAL_MS);
      this.timer.unref();
    }
  }

  private broadcast(): void {
    if (this.clients.size === 0) return;
    const frame = `data: ${JSON.stringify(this.snapshot())}\n\n`;
    for (const c of this.clients) if (!c.writableEnded) c.write(frame);
  }

  /** Ends open streams so the HTTP server can close (browsers would otherwise hold it open). */
  onModuleDestroy(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const c of this.clients) c.end();
    this.clients.clear();
  }
}
