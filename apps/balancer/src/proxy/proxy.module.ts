import { Inject, Module, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage, Server, ServerResponse } from 'http';
import type { Duplex } from 'stream';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { setAllowedOrigins } from '../http/cors';
import { errorBody, sendError } from '../http/errors';
import { OllamaApiModule } from '../ollama-api/ollama-api.module';
import { RoutingModule } from '../routing/routing.module';
import { UsageModule } from '../usage/usage.module';
import { BodyDeadlines } from './body-deadline';
import { AccessControl } from './access-control';
import { ProxyService } from './proxy.service';
import { RequestRecords } from './request-records';
import { pickRequestId } from './request-fields';
import { isProxyPath } from './route-table';
import { UpstreamTransport } from './upstream-attempt';

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

@Module({
  imports: [RoutingModule, OllamaApiModule, UsageModule],
  providers: [ProxyService, UpstreamTransport, AccessControl, RequestRecords],
  exports: [RoutingModule, ProxyService, AccessControl, RequestRecords],
})
export class ProxyModule implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly bodies: BodyDeadlines;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly proxy: ProxyService,
    @Inject(BALANCER_CONFIG) config: BalancerConfig,
  ) {
    this.bodies = new BodyDeadlines(config.bodyTimeoutMs);
    setAllowedOrigins(config.allowedOrigins);
  }

  onModuleDestroy(): void {
    this.bodies.stop();
  }

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
    const bodies = this.bodies;
    const fast: Listener = (req, res) => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const path = q === -1 ? url : url.slice(0, q);
      bodies.watch(req, res, path);
      // An Upgrade the balancer does not take (no protocol switch here) still ends HTTP on this
      // connection for Node's parser: whatever a client pipelined behind it would never be read.
      if (req.headers.upgrade !== undefined) res.shouldKeepAlive = false;
      if (isProxyPath(path)) {
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
    // Expect: 100-continue. Node would write the interim answer of a pipelined request (queued behind
    // another answer) after its final answer's head, inside its body; and a GET or HEAD has no body
    // to invite. Only a request that is not queued, with a body, is told to go on; the others are
    // served as they are (a pipelining client sent its body already).
    if (server.listenerCount('checkContinue') === 0)
      server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
        if (res.socket !== null && req.method !== 'GET' && req.method !== 'HEAD') res.writeContinue();
        server.emit('request', req, res);
      });
    // Any other Expect: 417, as Node and Go's net/http (Ollama) answer it, in the route's error
    // shape. Node's own 417 left an Upgrade's connection open: its parser reads nothing after an
    // Upgrade, so whatever a client pipelined behind it waited for ever. It closes, as on 'request'.
    if (server.listenerCount('checkExpectation') === 0)
      server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
        req.headers['x-request-id'] = pickRequestId(req.headers['x-request-id']);
        if (req.headers.upgrade !== undefined) res.shouldKeepAlive = false;
        sendError(req, res, 417, 'expectation failed: the only Expect supported is 100-continue');
      });
    // CONNECT (a proxy tunnel) is no route here: without a listener Node would drop the socket unanswered.
    if (server.listenerCount('connect') === 0)
      server.on('connect', (req: IncomingMessage, socket: Duplex) =>
        refuseRaw(req, socket, 405, 'CONNECT is not supported'),
      );
    // Long streams must not be cut by Node's default timeouts; idle limits are ours.
    server.requestTimeout = 0;
    server.headersTimeout = 60_000;
    server.keepAliveTimeout = 65_000;
  }
}

/** Answers on a raw socket (no ServerResponse exists for CONNECT) in the route's error shape, then closes. */
function refuseRaw(req: IncomingMessage, socket: Duplex, status: number, message: string): void {
  const body = errorBody(req.url, status, message);
  socket.on('error', () => undefined);
  socket.end(
    `HTTP/1.1 ${status} Method Not Allowed\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
