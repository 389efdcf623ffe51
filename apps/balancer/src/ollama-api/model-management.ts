import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { BALANCER_CONFIG, BalancerConfig, normaliseModelName } from '../config/balancer-config';
import { Backend } from '../fleet/backend';
import { ModelInventory } from '../fleet/model-inventory';
import { NdjsonSplitter, OllamaClient } from '../fleet/ollama-client';
import { parseJsonObject, sendError } from '../http/errors';
import { errText, failures, FanOut, sendJson } from './fan-out';

/** The model-management calls fanned out to every (or every named) backend. */
export type ManagementCall = 'pull' | 'delete' | 'copy' | 'create' | 'blobs';

/**
 * Model management over the fleet: /api/pull and /api/create (one merged progress stream),
 * /api/delete, /api/copy and /api/blobs, on every available backend or those named by
 * X-Balancer-Backends. The inventory is refreshed from what each backend then holds.
 */
@Injectable()
export class ModelManagement {
  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly inventory: ModelInventory,
    private readonly client: OllamaClient,
    private readonly fanOut: FanOut,
  ) {}

  answer(call: ManagementCall, req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    let parsed: Record<string, any> | null = {};
    if (call !== 'blobs') {
      parsed = parseJsonObject(req, res, body);
      if (parsed === null) return;
    }
    const targets = this.fanOut.targets(req);
    if (targets instanceof Error) return sendError(req, res, 400, targets.message);
    if (targets.length === 0) return this.fanOut.noBackend(req, res);
    switch (call) {
      case 'pull':
      case 'create':
        void this.progress(call, req, res, parsed, targets);
        return;
      case 'delete':
        void this.delete(req, res, parsed, body, targets);
        return;
      case 'copy':
        void this.copy(req, res, parsed, body, targets);
        return;
      case 'blobs':
        void this.blobs(req, res, body, targets);
        return;
    }
  }

  /** /api/pull and /api/create on several backends: one merged progress view. */
  private async progress(kind: 'pull' | 'create', req: IncomingMessage, res: ServerResponse, parsed: any, targets: Backend[]): Promise<void> {
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
    const said = new Map<Backend, { success: boolean; error: string | null }>();
    const answers = await this.fanOut.all(targets, (b) => {
      const st = { success: false, error: null as string | null };
      said.set(b, st);
      const splitter = new NdjsonSplitter();
      const onObj = (o: any) => {
        if (o?.error) {
          st.error = String(o.error);
          return;
        }
        if (o?.status === 'success') {
          st.success = true;
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
      return this.client
        .backend(b, path, {
          method: 'POST',
          body: JSON.stringify({ ...parsed, stream: true }),
          timeoutMs: Math.max(this.config.headersTimeoutMs, this.config.idleStreamTimeoutMs),
          headers: this.fanOut.upstreamHeaders(req),
          onChunk: (c) => splitter.push(c, onObj),
        })
        .then((r) => {
          splitter.flush(onObj);
          return r;
        });
    });
    const results = answers.map((a) => {
      const st = said.get(a.b)!;
      let error = a.failed ? a.text : st.error;
      if (!a.failed && a.status !== 200 && error === null) error = `HTTP ${a.status}`;
      if (!st.success && error === null) error = 'stream ended without success';
      return { b: a.b, success: st.success, error };
    });
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
    if (failed.length === 0) return sendJson(res, 200, { status: 'success' });
    sendError(req, res, 500, `${kind} failed on ${failed.length} of ${results.length} backends (${summary})`);
  }

  private async delete(req: IncomingMessage, res: ServerResponse, parsed: any, body: Buffer, targets: Backend[]): Promise<void> {
    const raw = String(parsed.model ?? parsed.name ?? '');
    if (raw.trim() === '') return sendError(req, res, 400, 'model is required');
    const results = await this.fanOut.all(targets, (b) => this.client.backend(b, '/api/delete', { method: 'DELETE', body, timeoutMs: this.config.headersTimeoutMs, headers: this.fanOut.upstreamHeaders(req) }));
    const deleted = results.filter((r) => r.status === 200);
    for (const r of deleted) this.inventory.forgetModel(r.b, normaliseModelName(raw));
    const failed = results.filter((r) => r.status !== 200 && r.status !== 404);
    if (failed.length > 0) return sendError(req, res, 500, `delete failed on ${failures(failed)}`);
    if (deleted.length === 0) return sendError(req, res, 404, `model '${raw}' not found`);
    res.writeHead(200, { 'Content-Length': 0, 'X-Balancer-Backends': deleted.map((d) => d.b.name).join(',') });
    res.end();
  }

  private async copy(req: IncomingMessage, res: ServerResponse, parsed: any, body: Buffer, targets: Backend[]): Promise<void> {
    if (typeof parsed.source !== 'string' || typeof parsed.destination !== 'string' || !parsed.source || !parsed.destination)
      return sendError(req, res, 400, 'source and destination are required');
    const source = normaliseModelName(parsed.source);
    const holding = targets.filter((b) => b.inventoryAt === null || b.hasModel(source));
    if (holding.length === 0) return sendError(req, res, 404, `model '${parsed.source}' not found`);
    const results = await this.fanOut.all(holding, (b) => this.client.backend(b, '/api/copy', { method: 'POST', body, timeoutMs: this.config.headersTimeoutMs, headers: this.fanOut.upstreamHeaders(req) }));
    const ok = results.filter((r) => r.status === 200);
    for (const r of ok) void this.inventory.refresh(r.b).catch(() => undefined);
    const failed = results.filter((r) => r.status !== 200 && r.status !== 404);
    if (failed.length > 0) return sendError(req, res, 500, `copy failed on ${failures(failed)}`);
    if (ok.length === 0) return sendError(req, res, 404, `model '${parsed.source}' not found`);
    res.writeHead(200, { 'Content-Length': 0, 'X-Balancer-Backends': ok.map((d) => d.b.name).join(',') });
    res.end();
  }

  /** Blobs go to every target so a following /api/create works wherever it runs. */
  private async blobs(req: IncomingMessage, res: ServerResponse, body: Buffer, targets: Backend[]): Promise<void> {
    const path = req.url!.split('?')[0];
    const results = await this.fanOut.all(targets, (b) =>
      this.client.backend(b, path, {
        method: req.method,
        body: req.method === 'POST' ? body : undefined,
        timeoutMs: this.config.headersTimeoutMs,
        headers: { ...this.fanOut.upstreamHeaders(req), 'content-type': 'application/octet-stream' },
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
