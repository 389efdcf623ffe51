import { Inject, Injectable, OnModuleDestroy } from '@nestjs/common';
import { randomUUID } from 'crypto';
import * as http from 'http';
import type { IncomingMessage, ServerResponse } from 'http';
import { createProxyMiddleware, RequestHandler } from 'http-proxy-middleware';
import type { Socket } from 'net';
import { keepAliveMs as parseKeepAliveMs } from '@app/ollama-names';
import { BALANCER_CONFIG, BalancerConfig, normaliseModelName } from '../config/balancer-config';
import { Backend } from '../fleet/backend';
import { ModelInventory } from '../fleet/model-inventory';
import { OutlierDetection } from '../fleet/outlier-detection';
import { midStreamError, parseJsonObject, sendError } from '../http/errors';
import { Lifecycle } from '../lifecycle/lifecycle';
import type { Lease } from '../routing/lease-ledger';
import type { NoCandidate } from '../routing/placement';
import type { QueuedRequest } from '../routing/placement-queue';
import { RetryBudget } from '../routing/retry-budget';
import { RoutingService } from '../routing/routing.service';
import { resolvePriority, QueueIdentity } from '../routing/priority-class';
import { quotaMessage } from '../usage/usage-ledger';
import { UsageService } from '../usage/usage.service';
import { AccessControl } from './access-control';
import { ClusterApi } from './cluster-api.service';
import { neededCapabilities } from './request-capabilities';
import { RequestRecord, RequestRecords } from './request-records';
import { classifyRoute, RouteKind } from './routes';

/** Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus ones we set ourselves. */
const HOP_BY_HOP_REQUEST = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect'];
const HOP_BY_HOP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'trailer', 'upgrade', 'te']);
/** A body for a retried request is kept up to this size; larger ones are sent once. */
const MAX_ERROR_BODY = 64 * 1024;

interface ProxyTarget {
  protocol: string;
  host: string;
  hostname: string;
  port: string;
}

/** One try of a request on one backend. */
interface Attempt {
  req: LbRequest;
  res: ServerResponse;
  lease: Lease;
  target: ProxyTarget;
  proxyReq: http.ClientRequest | null;
  proxyRes: IncomingMessage | null;
  startedAt: number;
  /** What the deadline sweep checks: the headers deadline until a response, then the idle limit. */
  phase: 'headers' | 'idle';
  /** Body chunks seen so far, and the count and time when the sweep last saw it change. */
  chunks: number;
  seenChunks: number;
  idleSince: number;
  done: boolean;
}

/** Per-request state carried on the IncomingMessage for the proxy's event handlers. */
interface Flight {
  kind: RouteKind;
  model: string | null;
  displayModel: string | null;
  body: Buffer | null;
  sessionKey: string | null;
  attempt: Attempt | null;
  attempts: number;
  tried: Set<Backend>;
  requestId: string;
  startedAt: number;
  finished: boolean;
  clientGone: boolean;
  /** A retry of this request is in progress (counted once in the retry budget until it finishes). */
  retrying: boolean;
  record: RequestRecord;
  queued: QueuedRequest | null;
  res: ServerResponse;
  expectedTokens: number | null;
  promptTokens: number;
  streamed: boolean;
  /** The request's keep_alive in ms (-1 forever), when it gave one Ollama would accept. */
  keepAliveMs: number | undefined;
  /** Its class, key and weight in the placement queue. */
  queueIdentity: QueueIdentity;
  /** Where it entered the queue, when it waited (X-Balancer-Queue-Position). */
  queuePosition: number | undefined;
  /** What the model must be able to do on the backend (tools, thinking, vision). */
  capabilities: readonly string[];
  /** The request's path (a backend lacking the route is no candidate). */
  path: string;
}

type LbRequest = IncomingMessage & { lb?: Flight };

const NO_BODY_PIPE = { pipe: () => undefined } as any;

/**
 * The Ollama-compatible hot path. It reads and checks the request, asks RoutingService for a
 * backend, and relays the request through http-proxy-middleware with our own response handling:
 * status, headers and body unchanged, each NDJSON line or SSE event written the moment it arrives,
 * retries on another backend only before the first byte reached the client, the in-flight count
 * released on every path.
 */
@Injectable()
export class ProxyService implements OnModuleDestroy {
  private readonly agent: http.Agent;
  private readonly proxy: RequestHandler<IncomingMessage, ServerResponse>;
  /** Every model request not yet answered in full (what a drain waits for). */
  private readonly openResponses = new Map<ServerResponse, LbRequest>();
  /**
   * Attempts with a running deadline (headers, then idle). One sweep checks them all every
   * `sweepMs` instead of a timer per attempt and a timer refresh per chunk, which cost about 7 %
   * of the balancer's throughput on small requests. A deadline fires at most `sweepMs` late, never early.
   */
  private readonly watched = new Set<Attempt>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly sweepMs: number;

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly routing: RoutingService,
    private readonly retryBudget: RetryBudget,
    private readonly passive: OutlierDetection,
    private readonly inventory: ModelInventory,
    private readonly cluster: ClusterApi,
    private readonly access: AccessControl,
    private readonly observer: RequestRecords,
    private readonly lifecycle: Lifecycle,
    private readonly usage: UsageService,
  ) {
    this.sweepMs = Math.min(1000, Math.max(10, Math.floor(Math.min(config.headersTimeoutMs, config.idleStreamTimeoutMs) / 10)));
    this.agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024, scheduling: 'lifo' });
    this.proxy = createProxyMiddleware<IncomingMessage, ServerResponse>({
      router: (req) => (req as LbRequest).lb!.attempt!.target as unknown as string,
      changeOrigin: true,
      // The path goes upstream as the client sent it (origin-form, already classified by path):
      // this skips http-proxy's url.parse of every request URL.
      toProxy: true,
      agent: this.agent,
      selfHandleResponse: true,
      ejectPlugins: true,
      buffer: NO_BODY_PIPE,
      plugins: [
        (server) => {
          server.on('proxyReq', (proxyReq, req) => this.onProxyReq(proxyReq, req as LbRequest));
          server.on('proxyRes', (proxyRes, req, res) => this.onProxyRes(proxyRes, req as LbRequest, res as ServerResponse));
          server.on('error', (err, req, res, target) => this.onProxyError(err as NodeJS.ErrnoException, req as LbRequest, res as ServerResponse, target));
          server.on('econnreset', () => undefined);
        },
      ],
    });
  }

  onModuleDestroy(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    this.agent.destroy();
  }

  private watch(attempt: Attempt): void {
    this.watched.add(attempt);
    if (this.sweepTimer === null) {
      this.sweepTimer = setInterval(() => this.sweep(), this.sweepMs);
      this.sweepTimer.unref();
    }
  }

  /** Times out the attempts past their deadline; stops itself once nothing is watched. */
  private sweep(): void {
    if (this.watched.size === 0) {
      clearInterval(this.sweepTimer!);
      this.sweepTimer = null;
      return;
    }
    const now = Date.now();
    for (const a of this.watched) {
      if (a.done) {
        this.watched.delete(a);
      } else if (a.phase === 'headers') {
        if (now - a.startedAt >= this.config.headersTimeoutMs) this.onAttemptTimeout(a.req, a.res, a, 'headers');
      } else if (a.chunks !== a.seenChunks) {
        a.seenChunks = a.chunks;
        a.idleSince = now;
      } else if (now - a.idleSince >= this.config.idleStreamTimeoutMs) {
        this.onAttemptTimeout(a.req, a.res, a, 'idle');
      }
    }
  }

  /** From now on the attempt must see a body chunk at least every IDLE_STREAM_TIMEOUT_MS. */
  private idleDeadline(attempt: Attempt): void {
    attempt.phase = 'idle';
    attempt.seenChunks = attempt.chunks;
    attempt.idleSince = Date.now();
  }

  get inFlightResponses(): number {
    return this.openResponses.size;
  }

  /**
   * The drain deadline passed: every model request still open ends now, in its own format (a
   * final error line on a stream that began, 503 with Retry-After on one that had not), and the
   * queue is emptied the same way.
   */
  cutOpenResponses(message: string): void {
    for (const [res, req] of [...this.openResponses]) {
      const flight = req.lb;
      if (!flight || flight.finished) continue;
      if (flight.queued !== null) this.routing.cancel(flight.queued);
      const attempt = flight.attempt;
      // The answer's headers went out in one writeHead (not kept on res): its type is the backend's.
      if (res.headersSent) this.endStream(req, res, attempt?.proxyRes?.headers['content-type'], message);
      else {
        res.setHeader('Connection', 'close');
        this.fail(req, res, 503, message, 1);
      }
      if (attempt) this.endAttempt(req, attempt, message);
    }
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
    const record = this.observer.begin(req, path, requestId, startedAt);
    // One 'close' listener per request: the log/metrics record first, then a model request's own state.
    res.once('close', () => {
      this.observer.end(record, res);
      const flight = (req as LbRequest).lb;
      if (flight !== undefined) this.onClientClose(req as LbRequest, res, flight);
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
      void rated.then((d) => (d ? sendError(req, res, d.status, d.message, d.headers) : this.admitted(req, res, kind, path, requestId, startedAt, record)));
      return;
    }
    this.admitted(req, res, kind, path, requestId, startedAt, record);
  }

  /** Serves a request that passed admission (lifecycle, key, rate). */
  private admitted(req: IncomingMessage, res: ServerResponse, kind: RouteKind, path: string, requestId: string, startedAt: number, record: RequestRecord): void {
    switch (kind) {
      case 'not-found':
        return sendError(req, res, 404, `404 page not found: ${req.method} ${path}`);
      case 'preflight':
        void this.cluster.answerPreflight(req, res, req.url!);
        return;
      case 'method-not-allowed':
        return sendError(req, res, 405, `405 method not allowed: ${req.method} ${path}`, { Allow: allowFor(path) });
      case 'root':
      case 'version':
      case 'tags':
      case 'ps':
      case 'v1-models':
      case 'v1-model':
        this.cluster.answerRead(kind, req, res, path);
        return;
      case 'model':
      case 'push':
      case 'pull':
      case 'delete':
      case 'copy':
      case 'create':
      case 'blobs':
        break;
    }
    this.readBody(req, res, (body) => {
      if (kind !== 'model' && kind !== 'push') {
        this.cluster.answerManagement(kind, req, res, body);
        return;
      }
      this.startModelRequest(req as LbRequest, res, kind, path, body, requestId, startedAt, record);
    });
  }

  /** Reads the whole body (bounded). Answers 413 itself when it is too large. */
  private readBody(req: IncomingMessage, res: ServerResponse, done: (body: Buffer) => void): void {
    const limit = this.config.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? -1);
    if (declared > limit) {
      res.setHeader('Connection', 'close');
      sendError(req, res, 413, `request body of ${declared} bytes exceeds the limit of ${limit} bytes`);
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        res.setHeader('Connection', 'close');
        sendError(req, res, 413, `request body exceeds the limit of ${limit} bytes`);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!over) done(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.on('error', () => undefined);
  }

  private startModelRequest(req: LbRequest, res: ServerResponse, kind: RouteKind, path: string, body: Buffer, requestId: string, startedAt: number, record: RequestRecord): void {
    const parsed = parseJsonObject(req, res, body);
    if (parsed === null) return;
    const raw = typeof parsed.model === 'string' && parsed.model !== '' ? parsed.model : typeof parsed.name === 'string' ? parsed.name : '';
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
      if (named || (unload && this.inventory.holdersOf(model).length > 0)) {
        res.setHeader('X-Request-Id', requestId);
        void this.cluster.loadFanOut(req, res, path, body, model, raw, unload);
        return;
      }
    }
    // Its class (a key's, lowered by X-Priority, never raised) and its key's token quota.
    const priority = resolvePriority(this.config.priority, this.access.keyConfig(req), req.headers['x-priority']);
    if (!priority.ok) return sendError(req, res, 400, priority.message);
    record.priorityClass = this.config.priority.classes[priority.identity.cls];
    const overQuota = this.usage.check(record.apiKey);
    if (overQuota !== null) return sendError(req, res, 429, quotaMessage(overQuota), { 'Retry-After': overQuota.retryAfterS });
    const flight: Flight = {
      kind,
      model,
      queueIdentity: priority.identity,
      queuePosition: undefined,
      displayModel: raw,
      body,
      sessionKey: sessionKeyOf(req, parsed),
      expectedTokens: requestedTokens(parsed),
      keepAliveMs: keepAlive,
      capabilities: neededCapabilities(path, parsed),
      path,
      promptTokens: Math.ceil(body.length / 4),
      streamed: path.startsWith('/v1/') ? parsed.stream === true : parsed.stream !== false,
      attempt: null,
      attempts: 0,
      tried: new Set(),
      requestId,
      startedAt,
      finished: false,
      clientGone: false,
      retrying: false,
      record,
      queued: null,
      res,
    };
    req.lb = flight;
    // Hop-by-hop (the fixed set and whatever Connection names) and client credentials never travel
    // upstream (Authorization only when FORWARD_AUTHORIZATION is on).
    const headers = req.headers;
    if (headers.connection !== undefined) for (const h of connectionTokens(headers.connection)) delete headers[h];
    // Only delete what is there: deleting absent keys still costs on this per-request object.
    for (const h of HOP_BY_HOP_REQUEST) if (headers[h] !== undefined) delete headers[h];
    if (headers.authorization !== undefined && (!this.config.forwardAuthorization || this.access.isAdminToken(req))) delete headers.authorization;
    if (headers['x-api-key'] !== undefined) delete headers['x-api-key'];
    this.openResponses.set(res, req);
    // A request needing a capability asks the backends that have not listed theirs (/api/show, once
    // per model digest) before it is placed; every other request is placed at once.
    if (flight.capabilities.length > 0 && this.inventory.capabilitiesUnknown(model)) {
      void this.inventory.learnCapabilities(model).then(() => {
        if (!flight.finished) this.dispatch(req, res);
      });
      return;
    }
    this.dispatch(req, res);
  }

  /** The client's response closed: answered in full, or the client left (then stop the upstream work). */
  private onClientClose(req: LbRequest, res: ServerResponse, flight: Flight): void {
    this.openResponses.delete(res);
    if (!flight.finished) {
      flight.clientGone = true;
      this.abandon(req, 'client closed the connection');
    }
  }

  /** Places the request (possibly after queueing) and starts an attempt. */
  private dispatch(req: LbRequest, res: ServerResponse): void {
    const flight = req.lb!;
    const now = Date.now();
    const routeReq = {
      model: flight.model,
      modelSize: this.inventory.largestSize(flight.model),
      sessionKey: flight.sessionKey,
      now,
      displayModel: flight.displayModel ?? undefined,
      expectedTokens: flight.expectedTokens,
      promptTokens: flight.promptTokens,
      queue: flight.queueIdentity,
      capabilities: flight.capabilities,
      route: flight.path,
    };
    // Most requests are placed at once: no promise, no extra turn of the event loop.
    const placed = this.routing.place(routeReq, flight.tried);
    if (placed.kind === 'lease') return this.startAttempt(req, res, placed);
    if (placed.kind === 'no-candidate') return this.fail(req, res, placed.status, placed.message, placed.retryAfterS);
    const entry: QueuedRequest = {
      route: routeReq,
      tried: flight.tried,
      onPlaced: (lease: Lease) => {
        flight.queued = null;
        flight.queuePosition = entry.queuePosition;
        if (flight.clientGone || flight.finished) {
          lease.release();
          return;
        }
        this.startAttempt(req, res, lease);
      },
      onRefused: (refusal: NoCandidate) => {
        flight.queued = null;
        if (flight.clientGone) return;
        this.fail(req, res, refusal.status, refusal.message, refusal.retryAfterS);
      },
    };
    const refused = this.routing.enqueue(entry);
    if (refused !== null) return this.fail(req, res, refused.status, refused.message, refused.retryAfterS);
    flight.queued = entry;
  }

  private startAttempt(req: LbRequest, res: ServerResponse, lease: Lease): void {
    const flight = req.lb!;
    const b = lease.backend;
    flight.attempts++;
    flight.tried.add(b);
    const hostname = b.url.hostname.startsWith('[') ? b.url.hostname.slice(1, -1) : b.url.hostname;
    const attempt: Attempt = {
      req,
      res,
      lease,
      target: { protocol: b.url.protocol, host: b.host, hostname, port: b.url.port },
      proxyReq: null,
      proxyRes: null,
      startedAt: Date.now(),
      phase: 'headers',
      chunks: 0,
      seenChunks: 0,
      idleSince: 0,
      done: false,
    };
    flight.attempt = attempt;
    flight.record.backend = b.name;
    flight.record.reason = lease.reason;
    flight.record.queuedMs = lease.queuedMs;
    // Connect + response headers must come within the headers timeout (long enough for a cold load).
    this.watch(attempt);
    void this.proxy(req, res, (err?: unknown) => {
      if (err) this.onProxyError(err as NodeJS.ErrnoException, req, res, attempt.target);
    });
  }

  private onProxyReq(proxyReq: http.ClientRequest, req: LbRequest): void {
    const flight = req.lb;
    const attempt = flight?.attempt;
    if (!flight || !attempt || attempt.done) {
      proxyReq.destroy();
      return;
    }
    attempt.proxyReq = proxyReq;
    const socket = proxyReq.socket as Socket | null;
    if (socket && socket.connecting) {
      const connectTimer = setTimeout(() => this.onAttemptTimeout(req, null, attempt, 'connect'), this.config.connectTimeoutMs);
      socket.once('connect', () => clearTimeout(connectTimer));
      socket.once('close', () => clearTimeout(connectTimer));
    }
    const body = flight.body!;
    if (req.method === 'GET' || req.method === 'HEAD') proxyReq.end();
    else {
      proxyReq.setHeader('Content-Length', body.length);
      proxyReq.end(body);
    }
  }

  private onProxyRes(proxyRes: IncomingMessage, req: LbRequest, res: ServerResponse): void {
    const flight = req.lb;
    const attempt = flight?.attempt;
    if (!flight || !attempt || attempt.done || (proxyRes as any).req !== attempt.proxyReq) {
      proxyRes.destroy();
      return;
    }
    attempt.proxyRes = proxyRes;
    const status = proxyRes.statusCode ?? 502;
    const b = attempt.lease.backend;
    // Before the first byte reaches the client a failure may be retried on another backend.
    if (status >= 500 || status === 404) {
      // An error body that never ends must not hold the request: the idle limit applies to it too.
      this.idleDeadline(attempt);
      this.collect(proxyRes, attempt, (errBody) => {
        if (attempt.done) return;
        const busy = status === 503;
        // Gin's NotFound: this Ollama predates the route. Not the model's absence, not a failure of
        // the backend: it is no candidate for the route from now on, and the request goes elsewhere.
        if (status === 404 && isPageNotFound(proxyRes, errBody)) {
          b.noteRouteMissing(flight.path);
          // Bounded by the fleet, not the retry budget: each backend answers this at most once per route.
          if (!flight.clientGone && this.anotherCandidate(flight)) {
            flight.record.retries++;
            this.endAttempt(req, attempt, 'route missing');
            this.dispatch(req, res);
            return;
          }
          this.endAttempt(req, attempt, 'route missing');
          return this.fail(req, res, 404, '404 page not found');
        }
        const modelMissing = status === 404 && flight.model !== null && errBody.includes('not found');
        if (status >= 500) this.passive.failure(b, `HTTP ${status}`);
        if (modelMissing) this.inventory.forgetModel(b, flight.model!);
        if ((status >= 500 || modelMissing) && this.canRetry(flight)) {
          this.endAttempt(req, attempt, busy ? 'busy' : `status ${status}`);
          this.dispatchRetry(req, res, modelMissing ? 404 : status, errBody);
          return;
        }
        this.respondBuffered(req, res, attempt, proxyRes, errBody);
      });
      return;
    }
    this.passive.success(b);
    this.relay(req, res, attempt, proxyRes);
  }

  /** Counts a retry against the budget (once per request while it is in progress). */
  private noteRetry(flight: Flight): void {
    flight.record.retries++;
    if (!flight.retrying) {
      flight.retrying = true;
      this.retryBudget.begin();
    }
  }

  /** Retries on another backend; if none can take it, the client gets this backend's answer. */
  private dispatchRetry(req: LbRequest, res: ServerResponse, status: number, errBody: Buffer): void {
    const flight = req.lb!;
    if (!this.anotherCandidate(flight)) {
      if (!res.headersSent && !res.destroyed) {
        const headers: Record<string, string | number> = { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': errBody.length, 'X-Request-Id': flight.requestId };
        if (status === 503) headers['Retry-After'] = 1;
        res.writeHead(status, headers);
        res.end(errBody);
      }
      this.finish(req, status, 'no backend left to retry on');
      return;
    }
    this.noteRetry(flight);
    this.dispatch(req, res);
  }

  /** Whether a backend not yet tried could take this request. */
  private anotherCandidate(flight: Flight): boolean {
    return this.routing.hasCandidate(flight.model, flight.tried, { capabilities: flight.capabilities, route: flight.path });
  }

  private canRetry(flight: Flight): boolean {
    return !flight.clientGone && flight.attempts < this.config.retryMaxAttempts && (flight.retrying || this.retryBudget.allows());
  }

  private collect(stream: IncomingMessage, attempt: Attempt, done: (body: Buffer) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (c: Buffer) => {
      attempt.chunks++;
      if (size < MAX_ERROR_BODY) chunks.push(c);
      size += c.length;
    });
    stream.once('end', () => done(Buffer.concat(chunks)));
    stream.once('error', () => done(Buffer.concat(chunks)));
    stream.once('aborted', () => done(Buffer.concat(chunks)));
  }

  private responseHeaders(proxyRes: IncomingMessage, attempt: Attempt, flight: Flight, dropLength: boolean): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    const raw = proxyRes.rawHeaders;
    const named = connectionTokens(proxyRes.headers.connection);
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i];
      const lower = k.toLowerCase();
      if (HOP_BY_HOP_RESPONSE.has(lower) || (dropLength && lower === 'content-length') || (named.length > 0 && named.includes(lower))) continue;
      const prev = out[k];
      out[k] = prev === undefined ? raw[i + 1] : Array.isArray(prev) ? [...prev, raw[i + 1]] : [prev, raw[i + 1]];
    }
    const lease = attempt.lease;
    out['X-Balancer-Backend'] = lease.backend.name;
    out['X-Balancer-Reason'] = lease.reason;
    out['X-Balancer-Queue-Ms'] = String(lease.queuedMs);
    if (flight.queuePosition !== undefined) out['X-Balancer-Queue-Position'] = String(flight.queuePosition);
    if (lease.predictedMs !== undefined) out['X-Balancer-Predicted-Ms'] = String(lease.predictedMs);
    if (flight.attempts > 1) out['X-Balancer-Attempts'] = String(flight.attempts);
    out['X-Request-Id'] = flight.requestId;
    return out;
  }

  private respondBuffered(req: LbRequest, res: ServerResponse, attempt: Attempt, proxyRes: IncomingMessage, body: Buffer): void {
    const flight = req.lb!;
    const status = proxyRes.statusCode ?? 502;
    if (!res.headersSent && !res.destroyed) {
      const headers = this.responseHeaders(proxyRes, attempt, flight, true);
      headers['Content-Length'] = String(body.length);
      if (status === 503 && proxyRes.headers['retry-after'] === undefined) headers['Retry-After'] = '1';
      res.writeHead(status, headers);
      res.end(body);
    }
    this.endAttempt(req, attempt, null);
    this.finish(req, status, null);
  }

  /**
   * Streams the backend's answer to the client chunk by chunk, untouched. The status line and
   * headers go out with the first body chunk (as Node would send them anyway): until then nothing
   * has reached the client and a failure is still retried elsewhere.
   */
  private relay(req: LbRequest, res: ServerResponse, attempt: Attempt, proxyRes: IncomingMessage): void {
    const flight = req.lb!;
    const status = proxyRes.statusCode ?? 502;
    const contentType = proxyRes.headers['content-type'];
    this.idleDeadline(attempt);
    // The last few chunks, by reference (no copies): Ollama's final object may span several.
    const recent: Buffer[] = [];
    let headed = false;
    const observer = this.observer;
    const head = (): boolean => {
      headed = true;
      if (res.headersSent || res.destroyed) return !res.destroyed;
      flight.record.status = status;
      flight.record.ttfbMs = Date.now() - flight.startedAt;
      attempt.lease.backend.learned.noteTtfb(Date.now() - attempt.startedAt);
      try {
        res.writeHead(status, this.responseHeaders(proxyRes, attempt, flight, false));
      } catch {
        res.destroy();
        return false;
      }
      return true;
    };
    proxyRes.on('data', (chunk: Buffer) => {
      if (attempt.done) return;
      attempt.chunks++;
      if (!headed && !head()) return;
      flight.record.bytes += chunk.length;
      if (recent.length === RECENT_CHUNKS) recent.shift();
      recent.push(chunk);
      if (!res.write(chunk)) {
        proxyRes.pause();
        res.once('drain', () => proxyRes.resume());
      }
    });
    proxyRes.once('end', () => {
      if (attempt.done) return;
      // http-proxy emits 'end' also for a body cut short; `complete` tells a clean end apart.
      if (!proxyRes.complete) return this.brokenStream(req, res, attempt, contentType, 'the backend closed the stream early');
      if (!headed) head();
      observer.finalEvents(flight.record, recent, flight.streamed);
      res.end();
      this.learnFromSuccess(flight, attempt);
      this.endAttempt(req, attempt, null);
      this.finish(req, status, null);
    });
    proxyRes.once('error', () => this.brokenStream(req, res, attempt, contentType, 'the backend connection failed mid-stream'));
    proxyRes.once('close', () => {
      if (!attempt.done && !proxyRes.complete) this.brokenStream(req, res, attempt, contentType, 'the backend connection closed mid-stream');
    });
  }

  private learnFromSuccess(flight: Flight, attempt: Attempt): void {
    const b = attempt.lease.backend;
    const r = flight.record;
    const model = flight.model;
    b.learned.noteAnswer(model, Date.now() - attempt.startedAt, r, model === null ? 0 : b.sizeOf(model), flight.streamed && r.ttfbMs !== null ? r.ttfbMs - r.queuedMs : null);
    if (model !== null && flight.kind === 'model' && r.status !== undefined && r.status < 300) this.inventory.noteServed(b, model, flight.keepAliveMs, r.loadDurationNs);
  }

  /**
   * The backend failed after its response began. If nothing reached the client yet it is still a
   * clean failure (retried elsewhere); otherwise say so in the stream's own format, then end.
   */
  private brokenStream(req: LbRequest, res: ServerResponse, attempt: Attempt, contentType: string | undefined, why: string): void {
    if (attempt.done) return;
    const b = attempt.lease.backend;
    if (!res.headersSent && !res.destroyed) return this.onAttemptFailure(req, res, attempt, why, b);
    this.passive.failure(b, why);
    this.endStream(req, res, contentType, `backend ${b.name}: ${why}`);
    this.endAttempt(req, attempt, why);
  }

  /** Ends a response that already began with an error line (or a cut, for a non-stream body). */
  private endStream(req: LbRequest, res: ServerResponse, contentType: string | undefined, message: string): void {
    const line = midStreamError(contentType, message, req.url);
    if (line !== null && !res.destroyed && !res.writableEnded) {
      res.end(line);
    } else if (!res.writableEnded) {
      // A JSON body cut short cannot carry an error: close the connection so it cannot pass for success.
      res.destroy();
    }
    this.finish(req, res.statusCode, message);
  }

  private onAttemptTimeout(req: LbRequest, res: ServerResponse | null, attempt: Attempt, which: 'connect' | 'headers' | 'idle'): void {
    if (attempt.done) return;
    const flight = req.lb!;
    const b = attempt.lease.backend;
    if (which === 'idle') {
      const ct = attempt.proxyRes?.headers['content-type'];
      this.brokenStream(req, res ?? flight.res, attempt, ct, `no data for ${this.config.idleStreamTimeoutMs} ms`);
      return;
    }
    const ms = which === 'connect' ? this.config.connectTimeoutMs : this.config.headersTimeoutMs;
    this.onAttemptFailure(req, flight.res, attempt, `${which} timeout after ${ms} ms`, b);
  }

  private onProxyError(err: NodeJS.ErrnoException, req: LbRequest, res: ServerResponse, target: unknown): void {
    const flight = req.lb;
    const attempt = flight?.attempt;
    if (!flight || !attempt || attempt.done || (target !== undefined && target !== attempt.target)) return;
    if (attempt.proxyRes) {
      this.brokenStream(req, res, attempt, attempt.proxyRes.headers['content-type'], err.message);
      return;
    }
    this.onAttemptFailure(req, res, attempt, `${err.code ?? 'error'}: ${err.message}`, attempt.lease.backend);
  }

  /** A failure before any response byte: retry elsewhere when allowed, otherwise 502/504. */
  private onAttemptFailure(req: LbRequest, res: ServerResponse, attempt: Attempt, why: string, b: Backend): void {
    const flight = req.lb!;
    this.passive.failure(b, why);
    this.endAttempt(req, attempt, why);
    if (flight.clientGone) return this.finish(req, 499, why);
    if (this.canRetry(flight) && this.anotherCandidate(flight)) {
      this.noteRetry(flight);
      this.dispatch(req, res);
      return;
    }
    const timeout = why.includes('timeout');
    this.fail(req, res, timeout ? 504 : 502, `backend ${b.name} failed: ${why}`);
  }

  private fail(req: LbRequest, res: ServerResponse, status: number, message: string, retryAfterS?: number): void {
    const headers: Record<string, string | number> = {};
    if (retryAfterS !== undefined) headers['Retry-After'] = retryAfterS;
    sendError(req, res, status, message, headers);
    this.finish(req, status, message);
  }

  private endAttempt(req: LbRequest, attempt: Attempt, why: string | null): void {
    if (attempt.done) return;
    attempt.done = true;
    this.watched.delete(attempt);
    if (why !== null) {
      attempt.proxyRes?.destroy();
      attempt.proxyReq?.destroy();
    }
    attempt.lease.release();
  }

  private finish(req: LbRequest, status: number, error: string | null): void {
    const flight = req.lb;
    if (!flight || flight.finished) return;
    flight.finished = true;
    flight.record.status = flight.record.status ?? status;
    if (error !== null) flight.record.error = error;
    flight.record.attempts = flight.attempts;
    flight.body = null;
    if (flight.retrying) {
      flight.retrying = false;
      this.retryBudget.end();
    }
  }

  /** The client left: abort the upstream request at once and free the in-flight slot. */
  private abandon(req: LbRequest, why: string): void {
    const flight = req.lb!;
    if (flight.queued !== null) this.routing.cancel(flight.queued);
    flight.queued = null;
    if (flight.attempt) this.endAttempt(req, flight.attempt, why);
    this.finish(req, 499, why);
  }
}

const RECENT_CHUNKS = 8;

const PAGE_NOT_FOUND = '404 page not found';

/** Gin's default 404 (text/plain `404 page not found`): the server has no such route. */
export function isPageNotFound(res: IncomingMessage, body: Buffer): boolean {
  const type = res.headers['content-type'];
  if (type !== undefined && !type.startsWith('text/plain')) return false;
  return body.length < 64 && body.toString('latin1').trim() === PAGE_NOT_FOUND;
}

/** The most output tokens the client asked for (Ollama's num_predict, OpenAI's max_tokens), if any. */
export function requestedTokens(body: any): number | null {
  const v = body?.options?.num_predict ?? body?.max_completion_tokens ?? body?.max_tokens ?? body?.max_output_tokens;
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.min(v, 1_000_000) : null;
}

/**
 * A keep_alive as Ollama reads it, in ms: a number of seconds or a Go duration string ("5m",
 * "1h30m", "0"); negative means forever (-1). Undefined when absent or not one Ollama accepts.
 * The one parser is in @app/ollama-names (its spec cites Ollama's api.Duration).
 */
export function keepAliveMs(v: unknown): number | undefined {
  return parseKeepAliveMs(v);
}

/** Ollama's load-only requests: generate with no prompt, chat with no messages. */
export function isLoadOnly(path: string, body: any): boolean {
  if (path === '/api/generate') return (body.prompt === undefined || body.prompt === '') && body.suffix === undefined && body.images === undefined;
  if (path === '/api/chat') return !Array.isArray(body.messages) || body.messages.length === 0;
  return false;
}

/** Header names listed in a Connection header (hop-by-hop by declaration, RFC 9110 7.6.1). */
function connectionTokens(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  const s = Array.isArray(v) ? v.join(',') : v;
  if (s === '' || s === 'keep-alive' || s === 'close') return [];
  return s
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '' && t !== 'close' && t !== 'keep-alive');
}

function pickRequestId(given: string | string[] | undefined): string {
  const v = Array.isArray(given) ? given[0] : given;
  if (v && v.length <= 128 && /^[\w.:@/+=-]+$/.test(v)) return v;
  return randomUUID();
}

function allowFor(path: string): string {
  const k = classifyRoute('POST', path);
  if (k === 'model' || k === 'pull' || k === 'copy' || k === 'create' || k === 'push') return 'POST';
  if (k === 'blobs') return 'HEAD, POST';
  if (classifyRoute('DELETE', path) === 'delete') return 'DELETE';
  return 'GET, HEAD';
}

/**
 * The conversation a request belongs to, for prompt-cache affinity: an explicit header, else a hash
 * of the system prompt and first user message (chat), else none.
 */
export function sessionKeyOf(req: IncomingMessage, body: any): string | null {
  const h = req.headers['x-session-id'] ?? req.headers['x-conversation-id'];
  const explicit = Array.isArray(h) ? h[0] : h;
  if (explicit) return `h:${explicit.slice(0, 256)}`;
  const msgs = body?.messages;
  if (Array.isArray(msgs) && msgs.length >= 1) {
    const sys = msgs.find((m: any) => m?.role === 'system')?.content ?? '';
    const first = msgs.find((m: any) => m?.role === 'user')?.content ?? '';
    if (typeof first === 'string' && first.length > 0) return `c:${body.model}:${fnv1a(String(sys).slice(0, 2048) + '\u0000' + first.slice(0, 2048))}`;
  }
  return null;
}

function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16);
}
