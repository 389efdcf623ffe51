import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { BALANCER_CONFIG, BalancerConfig, normaliseModelName } from '../config/balancer-config';
import { Backend, isPageNotFound, PAGE_NOT_FOUND } from '../fleet/backend';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { ModelInventory } from '../fleet/model-inventory';
import { OllamaClient } from '../fleet/ollama-client';
import { sendError } from '../http/errors';
import { FanOut, ownHeaders, sendJson } from './fan-out';

/** The fleet-wide reads the balancer answers itself from its backends' merged answers. */
export type MergedView = 'root' | 'version' | 'status' | 'tags' | 'ps' | 'v1-models' | 'v1-model';

/**
 * Ollama's reads over the whole fleet: /api/version (the oldest), /api/tags and /v1/models (every
 * model once), /api/ps (each model on each backend). Asks the available backends at once and
 * refreshes the inventory from what they say; a backend that does not answer is shown as last seen.
 */
@Injectable()
export class MergedViews {
  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly inventory: ModelInventory,
    private readonly client: OllamaClient,
    private readonly fanOut: FanOut,
  ) {}

  answer(view: MergedView, req: IncomingMessage, res: ServerResponse, path: string): void {
    const head = req.method === 'HEAD';
    switch (view) {
      case 'root': {
        const body = 'Ollama is running';
        res.writeHead(
          200,
          ownHeaders(req, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': body.length }),
        );
        res.end(head ? undefined : body);
        return;
      }
      case 'version':
        void this.version(req, res, head);
        return;
      case 'status':
        void this.status(req, res, head);
        return;
      case 'tags':
        void this.tags(req, res, head);
        return;
      case 'ps':
        void this.ps(req, res);
        return;
      case 'v1-models':
        void this.v1Models(req, res, null);
        return;
      case 'v1-model': {
        let name: string;
        try {
          name = decodeURIComponent(path.slice('/v1/models/'.length));
        } catch {
          // A malformed percent-encoding names no model (the client's mistake, not a 500).
          return sendError(req, res, 404, `model '${path.slice('/v1/models/'.length).slice(0, 200)}' not found`);
        }
        void this.v1Models(req, res, name);
        return;
      }
    }
  }

  private async version(req: IncomingMessage, res: ServerResponse, head: boolean): Promise<void> {
    const live = this.registry.available();
    if (live.length === 0) return this.fanOut.noBackend(req, res);
    // The oldest version in the fleet is what every request can count on.
    let versions = live.map((b) => b.version).filter((v): v is string => v !== null);
    if (versions.length === 0) {
      const got = await Promise.allSettled(
        live.map((b) => this.client.backend(b, '/api/version', { timeoutMs: this.config.healthTimeoutMs })),
      );
      versions = got.flatMap((g) => {
        if (g.status !== 'fulfilled' || g.value.status !== 200) return [];
        try {
          return [String(JSON.parse(g.value.body.toString()).version)];
        } catch {
          return [];
        }
      });
    }
    if (versions.length === 0) return sendError(req, res, 502, 'no backend answered /api/version');
    versions.sort(compareVersions);
    sendJson(req, res, 200, { version: versions[0] }, head);
  }

  /**
   * /api/status (Ollama 0.16.2+: `{"cloud":{"disabled","source"}}`) for the fleet: cloud is
   * disabled only when every backend that answers has it disabled (a cloud model is routed to a
   * backend that lists it, so one backend with cloud on serves it); the source is then what they
   * name together (`env` and `config` make `both`). Backends without the route are not asked
   * (or, answering `404 page not found`, not asked again); none with it: 404 as Ollama's own.
   */
  private async status(req: IncomingMessage, res: ServerResponse, head: boolean): Promise<void> {
    const available = this.registry.available();
    if (available.length === 0) return this.fanOut.noBackend(req, res);
    const live = available.filter((b) => !b.lacksRoute('/api/status'));
    const got = await Promise.allSettled(
      live.map((b) => this.client.backend(b, '/api/status', { timeoutMs: this.config.healthTimeoutMs })),
    );
    const clouds: { disabled: boolean; source: string }[] = [];
    got.forEach((g, i) => {
      if (g.status !== 'fulfilled') return;
      if (g.value.status === 404 && isPageNotFound(g.value.headers['content-type'], g.value.body))
        live[i].noteRouteMissing('/api/status');
      if (g.value.status !== 200) return;
      try {
        const cloud = JSON.parse(g.value.body.toString('utf8'))?.cloud;
        if (cloud !== null && typeof cloud === 'object')
          clouds.push({
            disabled: cloud.disabled === true,
            source: typeof cloud.source === 'string' ? cloud.source : 'none',
          });
      } catch {
        // not an answer to count
      }
    });
    if (clouds.length === 0) {
      if (live.every((b) => b.lacksRoute('/api/status'))) {
        res.writeHead(404, ownHeaders(req, { 'Content-Type': 'text/plain', 'Content-Length': PAGE_NOT_FOUND.length }));
        res.end(head ? undefined : PAGE_NOT_FOUND);
        return;
      }
      return sendError(req, res, 502, 'no backend answered /api/status');
    }
    const disabled = clouds.every((c) => c.disabled);
    const sources = new Set(
      disabled
        ? clouds.flatMap((c) => (c.source === 'both' ? ['env', 'config'] : c.source === 'none' ? [] : [c.source]))
        : [],
    );
    const source = sources.size === 0 ? 'none' : sources.size > 1 ? 'both' : [...sources][0];
    sendJson(req, res, 200, { cloud: { disabled, source } }, head);
  }

  /** Asks every available backend at once; refreshes the inventory from what comes back. */
  private async gather(path: '/api/tags' | '/api/ps'): Promise<{ b: Backend; models: any[] }[]> {
    const live = this.registry.available();
    const got = await Promise.allSettled(
      live.map((b) => this.client.backend(b, path, { timeoutMs: this.config.healthTimeoutMs * 2 })),
    );
    const out: { b: Backend; models: any[] }[] = [];
    got.forEach((g, i) => {
      const b = live[i];
      if (g.status === 'fulfilled' && g.value.status === 200) {
        try {
          if (path === '/api/tags') this.inventory.applyTags(b, g.value);
          else this.inventory.applyPs(b, g.value);
          out.push({ b, models: JSON.parse(g.value.body.toString('utf8')).models });
          return;
        } catch {
          // fall back to the cached inventory below
        }
      }
      const cached = path === '/api/tags' ? [...b.modelsOnDisk.values()] : [...b.modelsLoaded.values()];
      if (b.inventoryAt !== null) out.push({ b, models: cached.map((m) => m.raw) });
    });
    return out;
  }

  private async mergedTags(): Promise<{ models: any[]; answered: number }> {
    const per = await this.gather('/api/tags');
    const seen = new Map<string, any>();
    for (const { models } of per) {
      for (const m of models) {
        const name = normaliseModelName(String(m?.name ?? m?.model ?? ''));
        if (name && !seen.has(name)) seen.set(name, m);
      }
    }
    const models = [...seen.values()].sort((a, b) =>
      String(b.modified_at ?? '').localeCompare(String(a.modified_at ?? '')),
    );
    return { models, answered: per.length };
  }

  private async tags(req: IncomingMessage, res: ServerResponse, head: boolean): Promise<void> {
    if (this.registry.available().length === 0) return this.fanOut.noBackend(req, res);
    const { models, answered } = await this.mergedTags();
    if (answered === 0) return sendError(req, res, 502, 'no backend answered /api/tags');
    sendJson(req, res, 200, { models }, head);
  }

  private async ps(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.registry.available().length === 0) return this.fanOut.noBackend(req, res);
    const per = await this.gather('/api/ps');
    if (per.length === 0) return sendError(req, res, 502, 'no backend answered /api/ps');
    // One entry per (model, backend): the same model loaded on two servers is listed twice.
    const models = per.flatMap(({ b, models }) => models.map((m) => ({ ...m, backend: b.name })));
    models.sort((a, b) => String(b.expires_at ?? '').localeCompare(String(a.expires_at ?? '')));
    sendJson(req, res, 200, { models });
  }

  private async v1Models(req: IncomingMessage, res: ServerResponse, one: string | null): Promise<void> {
    if (this.registry.available().length === 0) return this.fanOut.noBackend(req, res);
    const { models, answered } = await this.mergedTags();
    if (answered === 0) return sendError(req, res, 502, 'no backend answered /api/tags');
    const data = models.map((m) => {
      const id = String(m.name ?? m.model);
      const created = Math.floor((Date.parse(m.modified_at) || Date.now()) / 1000);
      return { id, object: 'model', created, owned_by: namespaceOf(id) };
    });
    if (one === null) return sendJson(req, res, 200, { object: 'list', data });
    const want = normaliseModelName(one);
    const found = data.find((d) => normaliseModelName(d.id) === want);
    if (!found) return sendError(req, res, 404, `model '${one}' not found`);
    // As Ollama's retrieve does: the id is the name asked for (`llama3.2` stays `llama3.2`).
    sendJson(req, res, 200, { ...found, id: one, owned_by: namespaceOf(one) });
  }
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => Number(x));
  const pb = b.split(/[.-]/).map((x) => Number(x));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (Number.isNaN(x) || Number.isNaN(y)) return a.localeCompare(b);
    if (x !== y) return x - y;
  }
  return 0;
}

/**
 * A model name's namespace as Ollama's model.ParseName reads it: `library` for `llama3.2`, `user`
 * for `user/model` and for `host/user/model` (`hf.co/user/repo:tag`).
 */
export function namespaceOf(name: string): string {
  const parts = name.split('/');
  if (parts.length >= 3) return parts[parts.length - 2] || 'library';
  if (parts.length === 2) return parts[0] || 'library';
  return 'library';
}
