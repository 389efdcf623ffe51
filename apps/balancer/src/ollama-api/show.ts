import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { BALANCER_CONFIG, BalancerConfig, normaliseModelName } from '../config/balancer-config';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { OllamaClient } from '../fleet/ollama-client';
import { sendError } from '../http/errors';
import { modelField } from '../http/request-fields';
import { FanOut, ownHeaders } from './fan-out';

/** Backends asked in turn before giving up. */
const MAX_TRIES = 3;

/**
 * /api/show is metadata, not inference: Ollama reads the model's manifest and answers at once,
 * loading nothing. So it takes no slot and never waits in the placement queue (behind generations
 * it would otherwise wait for), and its answer says nothing about what is loaded. It goes to an
 * available backend holding the model (one with it loaded first, then the least busy), and to the
 * next when one fails.
 */
@Injectable()
export class ShowModel {
  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly client: OllamaClient,
    private readonly fanOut: FanOut,
  ) {}

  async answer(
    req: IncomingMessage,
    res: ServerResponse,
    parsed: Record<string, unknown>,
    body: Buffer,
  ): Promise<void> {
    const raw = modelField(parsed);
    if (raw.trim() === '') return sendError(req, res, 400, 'model is required');
    const model = normaliseModelName(raw);
    const live = this.registry.available();
    if (live.length === 0) return this.fanOut.noBackend(req, res);
    const holders = live.filter((b) => b.inventoryAt === null || b.hasModel(model));
    if (holders.length === 0) return sendError(req, res, 404, `model '${raw}' not found`);
    holders.sort((x, y) => Number(y.isLoaded(model)) - Number(x.isLoaded(model)) || x.inFlight - y.inFlight);
    let lastError = '';
    for (const b of holders.slice(0, MAX_TRIES)) {
      try {
        const r = await this.client.backend(b, '/api/show', {
          method: 'POST',
          body,
          timeoutMs: Math.max(this.config.healthTimeoutMs * 5, 10_000),
          headers: this.fanOut.upstreamHeaders(req),
        });
        if (r.status >= 500) {
          lastError = `backend ${b.name}: HTTP ${r.status}`;
          continue;
        }
        if (res.destroyed) return;
        const headers: Record<string, string | number> = {
          'Content-Type': String(r.headers['content-type'] ?? 'application/json; charset=utf-8'),
          'Content-Length': r.body.length,
          'X-Balancer-Backend': b.name,
        };
        res.writeHead(r.status, ownHeaders(req, headers));
        res.end(r.body);
        return;
      } catch (e) {
        lastError = `backend ${b.name}: ${(e as Error).message}`;
      }
    }
    sendError(req, res, 502, `no backend answered /api/show (${lastError})`);
  }
}
