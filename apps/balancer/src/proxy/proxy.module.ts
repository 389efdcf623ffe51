import { Module, OnApplicationBootstrap } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage, Server, ServerResponse } from 'http';
import { RoutingModule } from '../routing/routing.module';
import { sendError } from '../http/errors';
import { AccessControl } from './access-control';
import { ClusterApi } from './cluster-api.service';
import { ProxyService } from './proxy.service';
import { RequestRecords } from './request-records';
import { isProxyPath } from './routes';

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

@Module({
  imports: [RoutingModule],
  providers: [ProxyService, ClusterApi, AccessControl, RequestRecords],
  exports: [RoutingModule, ProxyService, AccessControl, RequestRecords],
})
export class ProxyModule implements OnApplicationBootstrap {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly proxy: ProxyService,
  ) {}

  /**
   * Ollama's and OpenAI's paths go straight from the HTTP server to ProxyService, ahead of Express's
   * router and body parser: the proxied body stays unread until we read it, and the hot path does
   * not pay for middleware it does not need. Everything else (/health, /metrics, /balancer) is
   * served by Nest as usual.
   */
  onApplicationBootstrap(): void {
    const server = this.adapterHost.httpAdapter?.getHttpServer() as Server | undefined;
    if (!server) return;
    const existing = server.listeners('request') as Listener[];
    if (existing.some((l) => (l as any).__balancerFastPath)) return;
    const nest = existing[0];
    server.removeAllListeners('request');
    const fast: Listener = (req, res) => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      if (isProxyPath(q === -1 ? url : url.slice(0, q))) {
        try {
          this.proxy.handle(req, res);
        } catch (e) {
          if (!res.headersSent) sendError(req, res, 500, `internal error: ${(e as Error).message}`);
          else res.destroy();
        }
      } else nest(req, res);
    };
    (fast as any).__balancerFastPath = true;
    server.on('request', fast);
    // Long streams must not be cut by Node's default timeouts; idle limits are ours.
    server.requestTimeout = 0;
    server.headersTimeout = 60_000;
    server.keepAliveTimeout = 65_000;
  }
}
