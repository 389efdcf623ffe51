import { Inject, Injectable, Logger } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { BALANCER_CONFIG, BalancerConfig, normaliseModelName } from '../config/balancer-config';
import { ModelInventory } from '../fleet/model-inventory';
import { OutlierDetection } from '../fleet/outlier-detection';
import { OutputLengths } from '../fleet/output-lengths';
import { parseJsonObject, sendError } from '../http/errors';
import { modelField } from '../http/request-fields';
import { Lifecycle } from '../lifecycle/lifecycle';
import { LoadUnload } from '../ollama-api/load-unload';
import { MergedViews } from '../ollama-api/merged-views';
import { ModelManagement } from '../ollama-api/model-management';
import { Preflight } from '../ollama-api/preflight';
import { ShowModel } from '../ollama-api/show';
import { resolvePriority } from '../routing/priority-class';
import { ResumeBudget } from '../routing/resume-budget';
import { RetryBudget } from '../routing/retry-budget';
import { RoutingService } from '../routing/routing.service';
import { QuotaRefusal, quotaMessage } from '../usage/usage-ledger';
import { UsageService } from '../usage/usage.service';
import { AccessControl } from './access-control';
import { ModelRequest, ModelRequestServices } from './model-request';
import { neededCapabilities } from './request-capabilities';
import {
  continuesConversation,
  isLoadOnly,
  isStreamed,
  keepAliveMs,
  pickRequestId,
  requestedTokens,
  runnerOptionsOf,
  sessionKeyOf,
} from './request-fields';
import { RequestRecord, RequestRecords } from './request-records';
import { stripRequestHeaders } from './response-headers';
import { resumeSurfaceOf, ResumeSurface } from './stream-resume';
import { allowFor, classifyRoute, RouteKind } from './route-table';
import { UpstreamTransport } from './upstream-attempt';

/** A body refused for its size is still read (and dropped) up to this many times the limit, so the client sees the answer. */
const DRAIN_FACTOR = 4;

type ProxiedRequest = IncomingMessage & { modelRequest?: ModelRequest; heldBodyBytes?: number };

/**
 * The front door of Ollama's and OpenAI's paths: classifies the request (route table), admits it
 * (lifecycle, API keys, rate, model allow-list), reads its body, and hands it over: fleet-wide calls
 * to ollama-api/, a model request to a ModelRequest that sees it through.
 */
@Injectable()
export class ProxyService {
  private readonly services: ModelRequestServices;
  /** Bytes of request bodies read and held (until their request ends), bounded by BODY_MEMORY_BYTES. */
  private heldBodyBytes = 0;

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    routing: RoutingService,
    retryBudget: RetryBudget,
    outliers: OutlierDetection,
    inventory: ModelInventory,
    private readonly access: AccessControl,
    private readonly records: RequestRecords,
    private readonly lifecycle: Lifecycle,
    upstream: UpstreamTransport,
    private readonly views: MergedViews,
    private readonly management: ModelManagement,
    private readonly loads: LoadUnload,
    private readonly preflight: Preflight,
    private readonly usage: UsageService,
    private readonly show: ShowModel,
    resumeBudget: ResumeBudget,
    outputLengths: OutputLengths,
  ) {
    this.services = {
      routing,
      retryBudget,
      outliers,
      inventory,
      outputLengths,
      records,
      upstream,
      retryMaxAttempts: config.retryMaxAttempts,
      resumeBudget,
      resumeMax: config.streamResumeMax,
      log: new Logger('StreamResume'),
      open: new Set(),
    };
  }

  /** Model requests not yet answered in full (what a drain waits for). */
  get inFlightResponses(): number {
    return this.services.open.size;
  }

  /**
   * The drain deadline passed: the balancer is closing (the placement queue refuses), and every
   * model request still open ends now in its own format (a final error line on a stream that began,
   * 503 with Retry-After and Connection: close on one that had not, queued ones included).
   */
  cutOpenResponses(message: string): void {
    const open = [...this.services.open];
    // Out of the queue first, so that closing does not answer them with its own message.
    for (const r of open) r.leaveQueue();
    this.lifecycle.advance('closing');
    for (const r of open) r.cut(message);
    // Pulls and creates still streaming progress end with an error line too.
    this.management.cutOpen(message);
  }

  /** Entry point for every request on an Ollama or OpenAI path. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const startedAt = Date.now();
    const q = req.url!.indexOf('?');
    const path = q === -1 ? req.url! : req.url!.slice(0, q);
    const kind = classifyRoute(req.method ?? 'GET', path);
    const requestId = pickRequestId(req.headers['x-request-id']);
    req.headers['x-request-id'] = requestId;
    // Model requests name it in the one writeHead of their answer (sendError adds it too): a header
    // set ahead of writeHead sends Node down its slower path of merging headers.
    if (kind !== 'model' && kind !== 'push') res.setHeader('X-Request-Id', requestId);
    const record = this.records.begin(req, path, requestId, startedAt);
    // One 'close' listener per request: the log/metrics record first, then a model request's own state.
    res.once('close', () => {
      this.records.end(record, res);
      (req as ProxiedRequest).modelRequest?.clientClosed();
      const held = (req as ProxiedRequest).heldBodyBytes;
      if (held !== undefined) this.heldBodyBytes -= held;
    });

    if (!this.lifecycle.admitting) {
      res.setHeader('Connection', 'close');
      return sendError(req, res, 503, 'balancer is shutting down', { 'Retry-After': 1 });
    }
    const denied = this.access.check(req, kind);
    // The key's name (never the key) goes in the log line, rate-limited requests included.
    record.apiKey = this.access.keyName(req);
    if (denied) return sendError(req, res, denied.status, denied.message, denied.headers);
    // With REDIS_URL a key's rate is one bucket for every replica: the token comes from Redis first
    // (at most REDIS_COMMAND_TIMEOUT_MS; this replica's share of the rate decides past that).
    const rated = this.access.checkSharedRate(req);
    if (rated !== null) {
      void rated.then((d) =>
        d
          ? sendError(req, res, d.status, d.message, d.headers)
          : this.admitted(req, res, kind, path, requestId, startedAt, record),
      );
      return;
    }
    this.admitted(req, res, kind, path, requestId, startedAt, record);
  }

  /** Serves a request that passed admission (lifecycle, key, rate). */
  private admitted(
    req: IncomingMessage,
    res: ServerResponse,
    kind: RouteKind,
    path: string,
    requestId: string,
    startedAt: number,
    record: RequestRecord,
  ): void {
    switch (kind) {
      case 'not-found':
        return sendError(req, res, 404, `404 page not found: ${req.method} ${path}`);
      case 'method-not-allowed':
        return sendError(req, res, 405, `405 method not allowed: ${req.method} ${path}`, { Allow: allowFor(path) });
      case 'preflight':
        void this.preflight.answer(req, res, req.url!);
        return;
      case 'root':
      case 'version':
      case 'status':
      case 'tags':
      case 'ps':
      case 'v1-models':
      case 'v1-model':
        return this.views.answer(kind, req, res, path);
      case 'show':
        return this.readBody(req, res, (body) => {
          const parsed = parseJsonObject(req, res, body);
          if (parsed === null) return;
          const model = modelField(parsed);
          const allowed = model.trim() === '' ? null : this.access.allowsModel(req, normaliseModelName(model));
          if (allowed) return sendError(req, res, allowed.status, allowed.message);
          record.model = model.trim() === '' ? null : normaliseModelName(model);
          this.readyHeaders(req);
          void this.show.answer(req, res, parsed, body);
        });
      case 'blobs':
        // Streamed to the backends as it arrives: never buffered, so no MAX_BODY_BYTES.
        this.readyHeaders(req);
        return this.management.blob(req, res);
      case 'pull':
      case 'delete':
      case 'copy':
      case 'create':
        return this.readBody(req, res, (body) => {
          const parsed = parseJsonObject(req, res, body);
          if (parsed === null) return;
          // A key's model list covers what a management call names (copy's source and destination too).
          const denied = this.access.allowsManagement(req, kind, parsed);
          if (denied) return sendError(req, res, denied.status, denied.message);
          this.readyHeaders(req);
          this.management.answer(kind, req, res, parsed, body);
        });
      case 'model':
      case 'push':
        return this.readBody(req, res, (body) =>
          this.startModelRequest(req, res, kind, path, body, requestId, startedAt, record),
        );
    }
  }

  /** Reads the whole body (bounded). Answers 413 itself when it is too large. */
  private readBody(req: IncomingMessage, res: ServerResponse, done: (body: Buffer) => void): void {
    const limit = this.config.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? -1);
    if (declared > limit) {
      // The rest is read and dropped so the client sees the 413 (closing while it still sends would
      // reset the connection and lose it), unless it is far too large to bother.
      if (declared > limit * DRAIN_FACTOR) res.setHeader('Connection', 'close');
      sendError(req, res, 413, `request body of ${declared} bytes exceeds the limit of ${limit} bytes`);
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const held = req as ProxiedRequest;
    held.heldBodyBytes = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (over) {
        // Past the answer, the rest is dropped as it comes, up to a bound (then the connection goes).
        if (size > limit * DRAIN_FACTOR) req.socket.destroy();
        return;
      }
      if (size > limit) {
        over = true;
        chunks.length = 0;
        sendError(req, res, 413, `request body exceeds the limit of ${limit} bytes`);
        return;
      }
      // Every body held at once, not only each one, is bounded: many large bodies must not take the memory.
      if (this.heldBodyBytes + c.length > this.config.bodyMemoryBytes) {
        over = true;
        chunks.length = 0;
        sendError(
          req,
          res,
          503,
          'server busy: too many large request bodies in flight (BODY_MEMORY_BYTES), please try again',
          { 'Retry-After': 1 },
        );
        return;
      }
      this.heldBodyBytes += c.length;
      held.heldBodyBytes! += c.length;
      chunks.push(c);
    });
    req.on('end', () => {
      if (!over) done(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.on('error', () => undefined);
  }

  private startModelRequest(
    req: IncomingMessage,
    res: ServerResponse,
    kind: 'model' | 'push',
    path: string,
    body: Buffer,
    requestId: string,
    startedAt: number,
    record: RequestRecord,
  ): void {
    const parsed = parseJsonObject(req, res, body);
    if (parsed === null) return;
    const raw = modelField(parsed);
    if (raw.trim() === '') return sendError(req, res, 400, 'model is required');
    const model = normaliseModelName(raw);
    const allowed = this.access.allowsModel(req, model);
    if (allowed) return sendError(req, res, allowed.status, allowed.message);
    record.model = model;
    const keepAlive = keepAliveMs(parsed.keep_alive);
    // Preload (load-only naming backends) and unload (`ollama stop`: load-only with keep_alive 0)
    // go to each backend concerned: the named ones, else for an unload every one holding the model
    // loaded, not just the one routing would pick. Both are model management.
    if (isLoadOnly(path, parsed)) {
      const named = req.headers['x-balancer-backends'] !== undefined;
      const unload = keepAlive === 0;
      // A named request passed the management check with its headers; an unload is known only now.
      if (unload && !named) {
        const denied = this.access.checkManagement(req);
        if (denied) return sendError(req, res, denied.status, denied.message, denied.headers);
      }
      if (this.loads.concernsFleet(req, model, unload)) {
        res.setHeader('X-Request-Id', requestId);
        this.readyHeaders(req);
        void this.loads.answer(req, res, path, body, model, raw, unload);
        return;
      }
    }
    // Its class (a key's, lowered by X-Priority, never raised) and its key's token quota.
    const priority = resolvePriority(this.config.priority, this.access.keyConfig(req), req.headers['x-priority']);
    if (!priority.ok) return sendError(req, res, 400, priority.message);
    record.priorityClass = this.config.priority.classes[priority.identity.cls];
    const identity = priority.identity;
    const go = (overQuota: QuotaRefusal | null): void => {
      if (overQuota !== null)
        return sendError(req, res, 429, quotaMessage(overQuota), { 'Retry-After': overQuota.retryAfterS });
      this.placeModelRequest(
        req,
        res,
        kind,
        path,
        body,
        parsed,
        identity,
        model,
        raw,
        keepAlive,
        requestId,
        startedAt,
        record,
      );
    };
    // With REDIS_URL the quota is judged on every replica's usage: at most REDIS_COMMAND_TIMEOUT_MS
    // (this replica's share of the quota decides past that).
    const quota = this.usage.check(record.apiKey);
    // A client that left while Redis answered has nothing to place (its 'close' has been handled).
    if (quota instanceof Promise) void quota.then((r) => (res.destroyed ? undefined : go(r)));
    else go(quota);
  }

  private placeModelRequest(
    req: IncomingMessage,
    res: ServerResponse,
    kind: 'model' | 'push',
    path: string,
    body: Buffer,
    parsed: Record<string, any>,
    identity: Extract<ReturnType<typeof resolvePriority>, { ok: true }>['identity'],
    model: string,
    raw: string,
    keepAlive: ReturnType<typeof keepAliveMs>,
    requestId: string,
    startedAt: number,
    record: RequestRecord,
  ): void {
    const streamed = isStreamed(path, parsed);
    const request = new ModelRequest(this.services, req, res, {
      kind,
      queue: identity,
      model,
      displayModel: raw,
      body,
      sessionKey: sessionKeyOf(req, parsed),
      outputBound: requestedTokens(parsed),
      continuesConversation: continuesConversation(path, parsed),
      runnerOptions: runnerOptionsOf(parsed),
      keepAliveMs: keepAlive,
      capabilities: neededCapabilities(path, parsed),
      path,
      streamed,
      resume: this.resumableAs(path, parsed, streamed, model),
      requestId,
      startedAt,
      record,
    });
    (req as ProxiedRequest).modelRequest = request;
    this.readyHeaders(req);
    request.start();
  }

  /** A streamed chat that may be resumed if its backend dies mid-stream (STREAM_RESUME): its format and request. */
  private resumableAs(
    path: string,
    parsed: Record<string, any>,
    streamed: boolean,
    model: string,
  ): { surface: ResumeSurface; request: Record<string, any> } | null {
    if (!this.config.streamResume) return null;
    const surface = resumeSurfaceOf(path, parsed, streamed, model, this.config.streamResumeModels);
    return surface === null ? null : { surface, request: parsed };
  }

  /**
   * The client's headers as they may go upstream: hop-by-hop ones and client credentials never
   * travel (Authorization only with FORWARD_AUTHORIZATION, and never the admin token).
   */
  private readyHeaders(req: IncomingMessage): void {
    const h = req.headers;
    stripRequestHeaders(
      h,
      h.authorization !== undefined && this.config.forwardAuthorization && !this.access.isAdminToken(req),
    );
  }
}
