import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { BALANCER_CONFIG, BalancerConfig, normaliseModelName } from '../config/balancer-config';
import { Backend } from '../fleet/backend';
import { ModelInventory } from '../fleet/model-inventory';
import { NdjsonSplitter, OllamaClient } from '../fleet/ollama-client';
import { sendError } from '../http/errors';
import { modelField } from '../http/request-fields';
import { BackendAnswer, errText, failures, failureStatus, FanOut, ownHeaders, sendJson } from './fan-out';

/** The model-management calls fanned out to every (or every named) backend. */
export type ManagementCall = 'pull' | 'delete' | 'copy' | 'create' | 'blobs';

/**
 * Model management over the fleet: /api/pull and /api/create (one merged progress stream),
 * /api/delete, /api/copy and /api/blobs, on every available backend or those named by
 * X-Balancer-Backends. The inventory is refreshed from what each backend then holds.
 */
@Injectable()
export class ModelManagement {
  /** Progress streams under way, each with the way to end it with an error line (drain deadline). */
  private readonly open = new Set<(message: string) => void>();

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly inventory: ModelInventory,
    private readonly client: OllamaClient,
    private readonly fanOut: FanOut,
  ) {}

  /** A JSON management call (the proxy read and checked its body). */
  answer(
    call: Exclude<ManagementCall, 'blobs'>,
    req: IncomingMessage,
    res: ServerResponse,
    parsed: Record<string, any>,
    body: Buffer,
  ): void {
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
    }
  }

  /** Progress streams still open end now with an error line (the drain deadline passed). */
  cutOpen(message: string): void {
    for (const cut of [...this.open]) cut(message);
  }

  /** /api/pull and /api/create on several backends: one merged progress view. */
  private async progress(
    kind: 'pull' | 'create',
    req: IncomingMessage,
    res: ServerResponse,
    parsed: Record<string, any>,
    targets: Backend[],
  ): Promise<void> {
    const stream = parsed.stream !== false;
    if (modelField(parsed).trim() === '') return sendError(req, res, 400, 'model is required');
    const path = `/api/${kind}`;
    // Not streamed: each backend answers in full, with its own status (a 4xx stays a 4xx).
    if (!stream) return this.whole(kind, req, res, path, parsed, targets);
    const digests = new Map<string, Map<string, { total: number; completed: number }>>();
    const seenStatus = new Set<string>();
    let aborted = false;
    res.once('close', () => (aborted = !res.writableFinished));
    res.writeHead(
      200,
      ownHeaders(req, {
        'Content-Type': 'application/x-ndjson',
        'X-Balancer-Backends': targets.map((b) => b.name).join(','),
      }),
    );
    const write = (obj: unknown) => {
      if (!aborted && !res.writableEnded) res.write(JSON.stringify(obj) + '\n');
    };
    const cut = (message: string) => {
      this.open.delete(cut);
      write({ error: message });
      if (!res.writableEnded) res.end();
    };
    this.open.add(cut);
    const said = new Map<Backend, { success: boolean; error: string | null }>();
    const answers = await this.fanOut.all(targets, (b) => {
      const st = { success: false, error: null as string | null };
      said.set(b, st);
      const splitter = new NdjsonSplitter();
      const onObj = (o: any) => {
        if (o?.error) {
          st.error = typeof o.error === 'string' ? o.error : JSON.stringify(o.error);
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
    if (!this.open.has(cut)) return;
    this.open.delete(cut);
    const results = answers.map((a) => {
      const st = said.get(a.b)!;
      let error = a.failed ? a.text : st.error;
      if (!a.failed && a.status !== 200 && error === null) error = errText(a.text, a.status);
      if (!st.success && error === null) error = 'stream ended without success';
      return { b: a.b, success: st.success, error };
    });
    const failed = results.filter((r) => !r.success);
    for (const r of results) if (r.success) void this.inventory.refresh(r.b).catch(() => undefined);
    const summary = failed.map((f) => `${f.b.name}: ${f.error}`).join('; ');
    const okNames = results.filter((r) => r.success).map((r) => r.b.name);
    if (aborted) return;
    if (failed.length === 0) write({ status: 'success' });
    else
      write({
        error: `${kind} failed on ${failed.length} of ${results.length} backends (${summary})${okNames.length ? `; succeeded on ${okNames.join(', ')}` : ''}`,
      });
    res.end();
  }

  /** A pull or create the client wants in one answer: each backend's own status decides ours. */
  private async whole(
    kind: 'pull' | 'create',
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    parsed: Record<string, any>,
    targets: Backend[],
  ): Promise<void> {
    const answers = await this.fanOut.all(targets, (b) =>
      this.client.backend(b, path, {
        method: 'POST',
        body: JSON.stringify({ ...parsed, stream: false }),
        timeoutMs: Math.max(this.config.headersTimeoutMs, this.config.idleStreamTimeoutMs),
        headers: this.fanOut.upstreamHeaders(req),
      }),
    );
    const failed = answers.filter((a) => a.failed || a.status !== 200);
    for (const a of answers) if (!a.failed && a.status === 200) void this.inventory.refresh(a.b).catch(() => undefined);
    if (failed.length === 0) return sendJson(req, res, 200, { status: 'success' });
    sendError(
      req,
      res,
      failureStatus(failed),
      `${kind} failed on ${failed.length} of ${answers.length} backends (${failures(failed)})`,
    );
  }

  private async delete(
    req: IncomingMessage,
    res: ServerResponse,
    parsed: Record<string, any>,
    body: Buffer,
    targets: Backend[],
  ): Promise<void> {
    const raw = modelField(parsed);
    if (raw.trim() === '') return sendError(req, res, 400, 'model is required');
    const results = await this.fanOut.all(targets, (b) =>
      this.client.backend(b, '/api/delete', {
        method: 'DELETE',
        body,
        timeoutMs: this.config.headersTimeoutMs,
        headers: this.fanOut.upstreamHeaders(req),
      }),
    );
    const deleted = results.filter((r) => r.status === 200);
    for (const r of deleted) this.inventory.forgetModel(r.b, normaliseModelName(raw));
    const failed = results.filter((r) => r.status !== 200 && r.status !== 404);
    if (failed.length > 0) return sendError(req, res, failureStatus(failed), `delete failed on ${failures(failed)}`);
    if (deleted.length === 0) return sendError(req, res, 404, `model '${raw}' not found`);
    res.writeHead(
      200,
      ownHeaders(req, { 'Content-Length': 0, 'X-Balancer-Backends': deleted.map((d) => d.b.name).join(',') }),
    );
    res.end();
  }

  private async copy(
    req: IncomingMessage,
    res: ServerResponse,
    parsed: Record<string, any>,
    body: Buffer,
    targets: Backend[],
  ): Promise<void> {
    if (
      typeof parsed.source !== 'string' ||
      typeof parsed.destination !== 'string' ||
      !parsed.source ||
      !parsed.destination
    )
      return sendError(req, res, 400, 'source and destination are required');
    const source = normaliseModelName(parsed.source);
    const holding = targets.filter((b) => b.inventoryAt === null || b.hasModel(source));
    if (holding.length === 0) return sendError(req, res, 404, `model '${parsed.source}' not found`);
    const results = await this.fanOut.all(holding, (b) =>
      this.client.backend(b, '/api/copy', {
        method: 'POST',
        body,
        timeoutMs: this.config.headersTimeoutMs,
        headers: this.fanOut.upstreamHeaders(req),
      }),
    );
    const ok = results.filter((r) => r.status === 200);
    for (const r of ok) void this.inventory.refresh(r.b).catch(() => undefined);
    const failed = results.filter((r) => r.status !== 200 && r.status !== 404);
    if (failed.length > 0) return sendError(req, res, failureStatus(failed), `copy failed on ${failures(failed)}`);
    if (ok.length === 0) return sendError(req, res, 404, `model '${parsed.source}' not found`);
    res.writeHead(
      200,
      ownHeaders(req, { 'Content-Length': 0, 'X-Balancer-Backends': ok.map((d) => d.b.name).join(',') }),
    );
    res.end();
  }

  /**
   * Blobs go to every target so a following /api/create works wherever it runs. The body is
   * streamed to all of them as it arrives (never buffered, so MAX_BODY_BYTES does not apply): the
   * client is read only as fast as the slowest backend takes it, so memory stays a few chunks.
   */
  blob(req: IncomingMessage, res: ServerResponse): void {
    const targets = this.fanOut.targets(req);
    if (targets instanceof Error) {
      req.resume();
      return sendError(req, res, 400, targets.message);
    }
    if (targets.length === 0) {
      req.resume();
      return this.fanOut.noBackend(req, res);
    }
    const path = req.url!.split('?')[0];
    if (req.method === 'HEAD') {
      req.resume();
      void this.fanOut
        .all(targets, (b) =>
          this.client.backend(b, path, {
            method: 'HEAD',
            timeoutMs: this.config.healthTimeoutMs * 2,
            headers: this.fanOut.upstreamHeaders(req),
          }),
        )
        .then((results) => {
          res.writeHead(results.every((r) => r.status === 200) ? 200 : 404, ownHeaders(req, { 'Content-Length': 0 }));
          res.end();
        });
      return;
    }
    const headers: Record<string, string> = {
      ...this.fanOut.upstreamHeaders(req),
      'content-type': 'application/octet-stream',
    };
    const length = req.headers['content-length'];
    if (typeof length === 'string') headers['content-length'] = length;
    else headers['transfer-encoding'] = 'chunked';
    const uploads = targets.map((b) => ({
      b,
      ...this.client.upload(b.url, path, { headers, timeoutMs: this.config.headersTimeoutMs }),
    }));
    // Sinks that asked the client to wait; the client is read again once every one has drained.
    const full = new Set<object>();
    req.on('data', (c: Buffer) => {
      for (const u of uploads) {
        if (u.sink.destroyed || full.has(u.sink) || u.sink.write(c)) continue;
        full.add(u.sink);
        const clear = () => {
          u.sink.off('drain', clear);
          u.sink.off('close', clear);
          full.delete(u.sink);
          if (full.size === 0) req.resume();
        };
        u.sink.on('drain', clear);
        u.sink.on('close', clear);
      }
      if (full.size > 0) req.pause();
    });
    req.once('end', () => {
      for (const u of uploads) u.sink.end();
    });
    // The client went away mid-upload: the backends must not keep a partial blob.
    res.once('close', () => {
      if (!req.complete) for (const u of uploads) u.sink.destroy();
    });
    const answered: Promise<BackendAnswer>[] = uploads.map(async (u) => {
      const t0 = Date.now();
      try {
        const r = await u.answer;
        return {
          b: u.b,
          status: r.status,
          text: r.body.toString('utf8'),
          body: r.body,
          failed: false,
          elapsedMs: Date.now() - t0,
        };
      } catch (e) {
        return {
          b: u.b,
          status: 502,
          text: (e as Error).message,
          body: null,
          failed: true,
          elapsedMs: Date.now() - t0,
        };
      }
    });
    void Promise.all(answered).then((results) => {
      if (res.writableEnded || res.destroyed) return;
      const bad = results.filter((r) => r.status >= 300);
      if (bad.length > 0) return sendError(req, res, failureStatus(bad), `blob upload failed on ${failures(bad)}`);
      res.writeHead(201, ownHeaders(req, { 'Content-Length': 0 }));
      res.end();
    });
  }
}
