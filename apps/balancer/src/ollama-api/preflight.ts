import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { OllamaClient } from '../fleet/ollama-client';
import { sendError } from '../http/errors';
import { FanOut } from './fan-out';

/**
 * A CORS preflight goes to one available backend and its answer comes back as is, so the fleet's
 * own OLLAMA_ORIGINS decides (the real request's Access-Control-* headers pass through the proxy).
 */
@Injectable()
export class Preflight {
  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly client: OllamaClient,
    private readonly fanOut: FanOut,
  ) {}

  async answer(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
    const live = this.registry.available();
    if (live.length === 0) return this.fanOut.noBackend(req, res);
    const b = live.reduce((x, y) => (y.inFlight < x.inFlight ? y : x));
    const headers: Record<string, string> = {};
    for (const h of ['origin', 'access-control-request-method', 'access-control-request-headers']) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    try {
      const r = await this.client.backend(b, url, {
        method: 'OPTIONS',
        headers,
        timeoutMs: this.config.healthTimeoutMs * 2,
      });
      const out: Record<string, string | string[]> = { 'Content-Length': String(r.body.length) };
      for (const [k, v] of Object.entries(r.headers))
        if (v !== undefined && (k.startsWith('access-control-') || k === 'vary' || k === 'content-type')) out[k] = v;
      res.writeHead(r.status, out);
      res.end(r.body);
    } catch (e) {
      sendError(req, res, 502, `backend ${b.name} failed the preflight: ${(e as Error).message}`);
    }
  }
}
