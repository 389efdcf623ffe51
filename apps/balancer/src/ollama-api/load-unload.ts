import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { learnLoad } from '../fleet/backend';
import { ModelInventory } from '../fleet/model-inventory';
import { OllamaClient } from '../fleet/ollama-client';
import { sendError } from '../http/errors';
import { errText, failures, FanOut, sendJson } from './fan-out';

/**
 * Ollama's load-only requests (empty prompt, no messages) on several backends: a preload on those
 * named by X-Balancer-Backends ("all" for every available one), so a model is warm where the operator
 * wants it before traffic arrives; an unload (`ollama stop`, keep_alive 0) on every backend holding
 * the model loaded, not just the one routing would pick.
 */
@Injectable()
export class LoadUnload {
  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly inventory: ModelInventory,
    private readonly client: OllamaClient,
    private readonly fanOut: FanOut,
  ) {}

  /** Whether this load-only request is one for the whole fleet rather than for one backend. */
  concernsFleet(req: IncomingMessage, model: string, unload: boolean): boolean {
    return req.headers['x-balancer-backends'] !== undefined || (unload && this.inventory.holdersOf(model).length > 0);
  }

  /** One answer in Ollama's load/unload shape, with `backends` saying what each did. */
  async answer(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    body: Buffer,
    model: string,
    asked: string,
    unload: boolean,
  ): Promise<void> {
    const targets =
      req.headers['x-balancer-backends'] !== undefined ? this.fanOut.targets(req) : this.inventory.holdersOf(model);
    if (targets instanceof Error) return sendError(req, res, 400, targets.message);
    if (targets.length === 0) return this.fanOut.noBackend(req, res);
    const holding = targets.filter((b) => b.inventoryAt === null || b.hasModel(model));
    if (holding.length === 0) return sendError(req, res, 404, `model '${model}' not found`);
    const verb = unload ? 'unload' : 'load';
    const wasLoaded = new Set(holding.filter((b) => b.isLoaded(model)));
    const results = await this.fanOut.all(holding, (b) =>
      this.client.backend(b, path, {
        method: 'POST',
        body,
        timeoutMs: this.config.headersTimeoutMs,
        headers: this.fanOut.upstreamHeaders(req),
      }),
    );
    for (const r of results) {
      if (r.status !== 200) continue;
      if (unload) r.b.noteUnloaded(model);
      else {
        r.b.noteLoaded(model);
        if (!wasLoaded.has(r.b)) learnLoad(r.b, model, r.body!, r.elapsedMs);
      }
      this.inventory.refreshSoon(r.b);
    }
    const failed = results.filter((r) => r.status !== 200);
    const backends = Object.fromEntries(
      results.map((r) => [r.b.name, r.status === 200 ? `${verb}ed` : errText(r.text, r.status)]),
    );
    if (failed.length > 0)
      return sendError(
        req,
        res,
        failed.length === results.length ? failed[0].status : 500,
        `${unload ? 'unload' : 'preload'} of '${model}' failed on ${failures(failed)}`,
      );
    // Named as the client asked, as Ollama answers (`llama3.2`, not `llama3.2:latest`).
    const done: Record<string, unknown> = {
      model: asked,
      created_at: new Date().toISOString(),
      done: true,
      done_reason: verb,
      backends,
    };
    if (path === '/api/chat') done.message = { role: 'assistant', content: '' };
    else done.response = '';
    sendJson(req, res, 200, done, false, { 'X-Balancer-Backends': holding.map((b) => b.name).join(',') });
  }
}
