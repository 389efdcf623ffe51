import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { BALANCER_CONFIG, BalancerConfig, normaliseModelName } from '../config/balancer-config';
import { Backend } from '../fleet/backend';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { ModelInventory } from '../fleet/model-inventory';
import { NdjsonSplitter, OllamaClient } from '../fleet/ollama-client';
import { parseJsonObject, sendError } from '../http/errors';
import { AccessControl } from './access-control';
import type { FanOutRouteKind, ReadRouteKind } from './routes';

const JSON_CT = 'application/json; charset=utf-8';

/**
 * The parts of Ollama's API that concern the whole cluster: merged views (/api/tags, /api/ps,
 * /v1/models, /api/version) and model management fanned out to several backends (/api/pull,
 * /api/delete, /api/copy, /api/create, /api/blobs).
 */
@Injectable()
export class ClusterApi {
  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly inventory: ModelInventory,
    private readonly client: OllamaClient,
    private readonly access: AccessControl,
  ) {}

  // ---- merged reads ----------------------------------------------------------------------------

  answerRead(kind: ReadRouteKind, req: IncomingMessage, res: ServerResponse, path: string): void {
    const head = req.method === 'HEAD';
    switch (kind) {
      case 'root': {
        const body = 'Ollama is running';
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': body.length });
        res.end(head ? undefined : body);
        return;
      }
      case 'version':
        void this.version(req, res, head);
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
      case 'v1-model':
        void this.v1Models(req, res, decodeURIComponent(path.slice('/v1/models/'.length)));
        return;
    }
  }

  private json(res: ServerResponse, status: number, obj: unknown, head = false, extra: Record<string, string> = {}): void {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'Content-Type': JSON_CT, 'Content-Length': Buffer.byteLength(body), ...extra });
    res.end(head ? undefined : body);
  }

  private noBackend(req: IncomingMessage, res: ServerResponse): void {
    sendError(req, res, 503, this.registry.backends.length === 0 ? 'no Ollama backends are configured' : 'no healthy Ollama backend is available', { 'Retry-After': 5 });
  }

  private async version(req: IncomingMessage, res: ServerResponse, head: boolean): Promise<void> {
    const live = this.registry.available();
    if (live.length === 0) return this.noBackend(req, res);
    // The oldest version in the fleet is what every request can count on.
    let versions = live.map((b) => b.version).filter((v): v is string => v !== null);
    if (versions.length === 0) {
      const got = await Promise.allSettled(live.map((b) => this.client.backend(b, '/api/version', { timeoutMs: this.config.healthTimeoutMs })));
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
    this.json(res, 200, { version: versions[0] }, head);
  }

  /** Asks every available backend at once; refreshes the inventory from what comes back. */
  private async gather(path: '/api/tags' | '/api/ps'): Promise<{ b: Backend; models: any[] }[]> {
    const live = this.registry.available();
    const got = await Promise.allSettled(live.map((b) => this.client.backend(b, path, { timeoutMs: this.config.healthTimeoutMs * 2 })));
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
    const models = [...seen.values()].sort((a, b) => String(b.modified_at ?? '').localeCompare(String(a.modified_at ?? '')));
    return { models, answered: per.length };
  }

  private async tags(req: IncomingMessage, res: ServerResponse, head: boolean): Promise<void> {
    if (this.registry.available().length === 0) return this.noBackend(req, res);
    const { models, answered } = await this.mergedTags();
    if (answered === 0) return sendError(req, res, 502, 'no backend answered /api/tags');
    this.json(res, 200, { models }, head);
  }

  private async ps(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.registry.available().length === 0) return this.noBackend(req, res);
    const per = await this.gather('/api/ps');
    if (per.length === 0) return sendError(req, res, 502, 'no backend answered /api/ps');
    // One entry per (model, backend): the same model loaded on two servers is listed twice.
    const models = per.flatMap(({ b, models }) => models.map((m) => ({ ...m, backend: b.name })));
    models.sort((a, b) => String(b.expires_at ?? '').localeCompare(String(a.expires_at ?? '')));
    this.json(res, 200, { models });
  }

  private async v1Models(req: IncomingMessage, res: ServerResponse, one: string | null): Promise<void> {
    if (this.registry.available().length === 0) return this.noBackend(req, res);
    const { models, answered } = await this.mergedTags();
    if (answered === 0) return sendError(req, res, 502, 'no backend answered /api/tags');
    const data = models.map((m) => {
      const id = String(m.name ?? m.model);
      const created = Math.floor((Date.parse(m.modified_at) || Date.now()) / 1000);
      return { id, object: 'model', created, owned_by: namespaceOf(id) };
    });
    if (one === null) return this.json(res, 200, { object: 'list', data });
    const want = normaliseModelName(one);
    const found = data.find((d) => normaliseModelName(d.id) === want);
    if (!found) return sendError(req, res, 404, `model '${one}' not found`);
    // As Ollama's retrieve does: the id is the name asked for (`llama3.2` stays `llama3.2`).
    this.json(res, 200, { ...found, id: one, owned_by: namespaceOf(one) });
  }

  /**
   * A CORS preflight goes to one available backend and its answer comes back as is, so the fleet's
   * own OLLAMA_ORIGINS decides (the real request's Access-Control-* headers pass through the proxy).
   */
  async answerPreflight(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
    const live = this.registry.available();
    if (live.length === 0) return this.noBackend(req, res);
    const b = live.reduce((x, y) => (y.inFlight < x.inFlight ? y : x));
    const headers: Record<string, string> = {};
    for (const h of ['origin', 'access-control-request-method', 'access-control-request-headers']) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    try {
      const r = await this.client.backend(b, url, { method: 'OPTIONS', headers, timeoutMs: this.config.healthTimeoutMs * 2 });
      const out: Record<string, string | string[]> = { 'Content-Length': String(r.body.length) };
      for (const [k, v] of Object.entries(r.headers)) if (v !== undefined && (k.startsWith('access-control-') || k === 'vary' || k === 'content-type')) out[k] = v;
      res.writeHead(r.status, out);
      res.end(r.body);
    } catch (e) {
      sendError(req, res, 502, `backend ${b.name} failed the preflight: ${(e as Error).message}`);
    }
  }

  // ---- management fan-out ------------------------------------------------------------------------

  answerManagement(kind: FanOutRouteKind, req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    let parsed: Record<string, any> | null = {};
    if (kind !== 'blobs') {
      parsed = parseJsonObject(req, res, body);
      if (parsed === null) return;
    }
    const targets = this.targets(req);
    if (targets instanceof Error) return sendError(req, res, 400, targets.message);
    if (targets.length === 0) return this.noBackend(req, res);
    switch (kind) {
      case 'pull':
      case 'create':
        void this.progressFanOut(kind, req, res, parsed, body, targets);
        return;
      case 'delete':
        void this.deleteFanOut(req, res, parsed, body, targets);
        return;
      case 'copy':
        void this.copyFanOut(req, res, parsed, body, targets);
        return;
      case 'blobs':
        void this.blobsFanOut(req, res, body, targets);
        return;
    }
  }

  /**
   * Which backends a management call goes to: every available one, or those named in the
   * `X-Balancer-Backends` header or `?backends=` query (names from configuration only).
   */
  private targets(req: IncomingMessage): Backend[] | Error {
    const q = req.url!.indexOf('?');
    const fromQuery = q >= 0 ? new URLSearchParams(req.url!.slice(q + 1)).get('backends') : null;
    const h = req.headers['x-balancer-backends'];
    const named = (Array.isArray(h) ? h[0] : h) ?? fromQuery;
    const live = this.registry.available();
    if (!named || named.trim() === '' || named.trim() === 'all') return live;
    const out: Backend[] = [];
    for (const n of named.split(',').map((s) => s.trim()).filter(Boolean)) {
      const b = this.registry.get(n);
      if (!b) return new Error(`unknown backend '${n}' (configured: ${this.registry.backends.map((x) => x.name).join(', ')})`);
      if (!b.isAvailable()) return new Error(`backend '${n}' is not available (health: ${b.health}${b.cordoned ? ', cordoned' : ''})`);
      out.push(b);
    }
    return out;
  }

  private upstreamHeaders(req: IncomingMessage): Record<string, string> {
    const h: Record<string, string> = {};
    const auth = req.headers.authorization;
    // Even with FORWARD_AUTHORIZATION the balancer's own admin token stops here.
    if (this.config.forwardAuthorization && auth && !this.access.isAdminToken(req)) h.authorization = auth;
    const id = req.headers['x-request-id'];
    if (typeof id === 'string') h['x-request-id'] = id;
    return h;
  }

  /** /api/pull and /api/create on several backends: one merged progress view. */
  private async progressFanOut(kind: 'pull' | 'create', req: IncomingMessage, res: ServerResponse, parsed: any, body: Buffer, targets: Backend[]): Promise<void> {
    const stream = parsed.stream !== false;
    const model = String(parsed.model ?? parsed.name ?? '');
    if (model.trim() === '') return sendError(req, res, 400, 'model is required');
    const path = `/api/${kind}`;
    const digests = new Map<string, Map<string, { total: number; completed: number }>>();
    const seenStatus = new Set<string>();
    let aborted = false;
    res.once('close', () => (aborted = !res.writableFinished));
    if (stream) {
      res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'X-Balancer-Backends': targets.map((b) => b.name).join(',') });
    }
    const write = (obj: unknown) => {
      if (stream && !aborted && !res.writableEnded) res.write(JSON.stringify(obj) + '\n');
    };
    const results = await Promise.all(
      targets.map(async (b) => {
        const splitter = new NdjsonSplitter();
        let success = false;
        let error: string | null = null;
        const onObj = (o: any) => {
          if (o?.error) {
            error = String(o.error);
            return;
          }
          if (o?.status === 'success') {
            success = true;
            return;
          }
          if (typeof o?.digest === 'string') {
            let per = digests.get(o.digest);
            if (!per) digests.set(o.digest, (per = new Map()));
            per.set(b.name, { total: Number(o.total) || 0, completed: Number(o.completed) || 0 });
            let total = 0;
            let completed = 0;
            for (const v of per.values()) {
              total += v.total;
              completed += v.completed;
            }
            write({ status: o.status, digest: o.digest, total, completed });
          } else if (typeof o?.status === 'string' && !seenStatus.has(o.status)) {
            seenStatus.add(o.status);
            write({ status: o.status });
          }
        };
        try {
          const r = await this.client.backend(b, path, {
            method: 'POST',
            body: JSON.stringify({ ...parsed, stream: true }),
            timeoutMs: Math.max(this.config.headersTimeoutMs, this.config.idleStreamTimeoutMs),
            headers: this.upstreamHeaders(req),
            onChunk: (c) => splitter.push(c, onObj),
          });
          splitter.flush(onObj);
          if (r.status !== 200 && error === null) error = `HTTP ${r.status}`;
        } catch (e) {
          error = (e as Error).message;
        }
        if (!success && error === null) error = 'stream ended without success';
        return { b, success, error };
      }),
    );
    const failed = results.filter((r) => !r.success);
    for (const r of results) if (r.success) void this.inventory.refresh(r.b).catch(() => undefined);
    const summary = failed.map((f) => `${f.b.name}: ${f.error}`).join('; ');
    const okNames = results.filter((r) => r.success).map((r) => r.b.name);
    if (aborted) return;
    if (stream) {
      if (failed.length === 0) write({ status: 'success' });
      else write({ error: `${kind} failed on ${failed.length} of ${results.length} backends (${summary})${okNames.length ? `; succeeded on ${okNames.join(', ')}` : ''}` });
      res.end();
      return;
    }
    if (failed.length === 0) return this.json(res, 200, { status: 'success' });
    sendError(req, res, 500, `${kind} failed on ${failed.length} of ${results.length} backends (${summary})`);
  }

  private async deleteFanOut(req: IncomingMessage, res: ServerResponse, parsed: any, body: Buffer, targets: Backend[]): Promise<void> {
    const raw = String(parsed.model ?? parsed.name ?? '');
    if (raw.trim() === '') return sendError(req, res, 400, 'model is required');
    const results = await Promise.all(
      targets.map(async (b) => {
        try {
          const r = await this.client.backend(b, '/api/delete', { method: 'DELETE', body, timeoutMs: this.config.headersTimeoutMs, headers: this.upstreamHeaders(req) });
          if (r.status === 200) this.inventory.forgetModel(b, normaliseModelName(raw));
          return { b, status: r.status, text: r.body.toString('utf8') };
        } catch (e) {
          return { b, status: 502, text: (e as Error).message };
        }
      }),
    );
    const deleted = results.filter((r) => r.status === 200);
    const failed = results.filter((r) => r.status !== 200 && r.status !== 404);
    if (failed.length > 0) return sendError(req, res, 500, `delete failed on ${failed.map((f) => `${f.b.name}: ${errText(f.text, f.status)}`).join('; ')}`);
    if (deleted.length === 0) return sendError(req, res, 404, `model '${raw}' not found`);
    res.writeHead(200, { 'Content-Length': 0, 'X-Balancer-Backends': deleted.map((d) => d.b.name).join(',') });
    res.end();
  }

  private async copyFanOut(req: IncomingMessage, res: ServerResponse, parsed: any, body: Buffer, targets: Backend[]): Promise<void> {
    if (typeof parsed.source !== 'string' || typeof parsed.destination !== 'string' || !parsed.source || !parsed.destination)
      return sendError(req, res, 400, 'source and destination are required');
    const source = normaliseModelName(parsed.source);
    const holding = targets.filter((b) => b.inventoryAt === null || b.hasModel(source));
    if (holding.length === 0) return sendError(req, res, 404, `model '${parsed.source}' not found`);
    const results = await Promise.all(
      holding.map(async (b) => {
        try {
          const r = await this.client.backend(b, '/api/copy', { method: 'POST', body, timeoutMs: this.config.headersTimeoutMs, headers: this.upstreamHeaders(req) });
          return { b, status: r.status, text: r.body.toString('utf8') };
        } catch (e) {
          return { b, status: 502, text: (e as Error).message };
        }
      }),
    );
    const ok = results.filter((r) => r.status === 200);
    for (const r of ok) void this.inventory.refresh(r.b).catch(() => undefined);
    const failed = results.filter((r) => r.status !== 200 && r.status !== 404);
    if (failed.length > 0) return sendError(req, res, 500, `copy failed on ${failed.map((f) => `${f.b.name}: ${errText(f.text, f.status)}`).join('; ')}`);
    if (ok.length === 0) return sendError(req, res, 404, `model '${parsed.source}' not found`);
    res.writeHead(200, { 'Content-Length': 0, 'X-Balancer-Backends': ok.map((d) => d.b.name).join(',') });
    res.end();
  }

  /**
   * A load-only request (empty prompt / no messages) on several backends: those named by
   * X-Balancer-Backends, else (an unload) every backend holding the model loaded. One answer in
   * Ollama's load/unload shape, with `backends` saying what each did.
   */
  async loadFanOut(req: IncomingMessage, res: ServerResponse, path: string, body: Buffer, model: string, asked: string, unload: boolean): Promise<void> {
    const targets = req.headers['x-balancer-backends'] !== undefined ? this.targets(req) : this.inventory.holdersOf(model);
    if (targets instanceof Error) return sendError(req, res, 400, targets.message);
    if (targets.length === 0) return this.noBackend(req, res);
    const holding = targets.filter((b) => b.inventoryAt === null || b.hasModel(model));
    if (holding.length === 0) return sendError(req, res, 404, `model '${model}' not found`);
    const verb = unload ? 'unload' : 'load';
    const results = await Promise.all(
      holding.map(async (b) => {
        const wasLoaded = b.isLoaded(model);
        const t0 = Date.now();
        try {
          const r = await this.client.backend(b, path, { method: 'POST', body, timeoutMs: this.config.headersTimeoutMs, headers: this.upstreamHeaders(req) });
          if (r.status === 200) {
            if (unload) b.noteUnloaded(model);
            else {
              b.noteLoaded(model);
              if (!wasLoaded) this.learnLoad(b, model, r.body, Date.now() - t0);
            }
            this.inventory.refreshSoon(b);
          }
          return { b, status: r.status, text: r.body.toString('utf8') };
        } catch (e) {
          return { b, status: 502, text: (e as Error).message };
        }
      }),
    );
    const failed = results.filter((r) => r.status !== 200);
    const backends = Object.fromEntries(results.map((r) => [r.b.name, r.status === 200 ? `${verb}ed` : errText(r.text, r.status)]));
    if (failed.length > 0) return sendError(req, res, failed.length === results.length ? failed[0].status : 500, `${unload ? 'unload' : 'preload'} of '${model}' failed on ${failed.map((f) => `${f.b.name}: ${errText(f.text, f.status)}`).join('; ')}`);
    // Named as the client asked, as Ollama answers (`llama3.2`, not `llama3.2:latest`).
    const done: Record<string, unknown> = { model: asked, created_at: new Date().toISOString(), done: true, done_reason: verb, backends };
    if (path === '/api/chat') done.message = { role: 'assistant', content: '' };
    else done.response = '';
    this.json(res, 200, done, false, { 'X-Balancer-Backends': holding.map((b) => b.name).join(',') });
  }

  /** A cold load's load_duration teaches how fast this backend loads models. */
  private learnLoad(b: Backend, model: string, body: Buffer, elapsedMs: number): void {
    const size = b.modelsOnDisk.get(model)?.size ?? 0;
    if (size <= 0) return;
    // Ollama's load-only answer carries no load_duration: the call's own duration is the load time.
    let ms = elapsedMs;
    try {
      const ns = Number(JSON.parse(body.toString('utf8'))?.load_duration);
      if (ns > 0) ms = ns / 1e6;
    } catch {
      // no JSON: keep the elapsed time
    }
    b.learned.noteLoad(ms, size);
  }

  /** Blobs go to every target so a following /api/create works wherever it runs. */
  private async blobsFanOut(req: IncomingMessage, res: ServerResponse, body: Buffer, targets: Backend[]): Promise<void> {
    const path = req.url!.split('?')[0];
    const results = await Promise.all(
      targets.map(async (b) => {
        try {
          const r = await this.client.backend(b, path, {
            method: req.method,
            body: req.method === 'POST' ? body : undefined,
            timeoutMs: this.config.headersTimeoutMs,
            headers: { ...this.upstreamHeaders(req), 'content-type': 'application/octet-stream' },
          });
          return { b, status: r.status, text: r.body.toString('utf8') };
        } catch (e) {
          return { b, status: 502, text: (e as Error).message };
        }
      }),
    );
    if (req.method === 'HEAD') {
      const all = results.every((r) => r.status === 200);
      res.writeHead(all ? 200 : 404, { 'Content-Length': 0 });
      return void res.end();
    }
    const bad = results.find((r) => r.status >= 300);
    if (bad) return sendError(req, res, bad.status >= 500 ? 500 : bad.status, `blob upload failed on ${bad.b.name}: ${errText(bad.text, bad.status)}`);
    res.writeHead(201, { 'Content-Length': 0 });
    res.end();
  }
}

function errText(text: string, status: number): string {
  try {
    const e = JSON.parse(text)?.error;
    if (typeof e === 'string') return e;
  } catch {
    // not JSON
  }
  return text.trim().slice(0, 200) || `HTTP ${status}`;
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
