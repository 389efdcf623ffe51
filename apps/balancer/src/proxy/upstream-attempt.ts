import { Inject, Injectable, OnModuleDestroy } from '@nestjs/common';
import * as http from 'http';
import type { IncomingMessage, ServerResponse } from 'http';
import * as https from 'https';
import { createProxyMiddleware, RequestHandler } from 'http-proxy-middleware';
import type { Socket } from 'net';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import type { Backend } from '../fleet/backend';
import { backendTlsOptions } from '../fleet/ollama-client';
import type { Lease } from '../routing/lease-ledger';
import { Deadlined, DeadlineSweep } from './deadline-sweep';

/** An error body is kept up to this size (to retry or pass on); the rest is counted, not kept. */
const MAX_ERROR_BODY = 64 * 1024;

/**
 * How an attempt reports back to the request that owns it (Envoy's upstream callbacks). Each
 * attempt reports at most one of end, body, failure or broken, and nothing after end(why).
 */
export interface AttemptOwner {
  /** The backend's status line and headers arrived: answer with relay() or collect() on the attempt. */
  onUpstreamHeaders(attempt: UpstreamAttempt, response: IncomingMessage): void;
  /** One body chunk while relaying. */
  onUpstreamData(attempt: UpstreamAttempt, chunk: Buffer): void;
  /** The relayed body ended cleanly. */
  onUpstreamEnd(attempt: UpstreamAttempt): void;
  /** The body collect() asked for (at most 64 KiB of it), complete or not. */
  onUpstreamBody(attempt: UpstreamAttempt, body: Buffer): void;
  /** The try failed before its response began (refused, reset, connect or headers deadline). */
  onUpstreamFailure(attempt: UpstreamAttempt, why: string): void;
  /** The response began, then broke (cut short, reset, no data within the idle limit). */
  onUpstreamBroken(attempt: UpstreamAttempt, why: string): void;
  /** The client has not read for the idle limit while the backend waited on it: the client's fault, not the backend's. */
  onClientStalled(attempt: UpstreamAttempt): void;
}

/** Where http-proxy-middleware sends one attempt (a configured backend, never a client's choice). */
export interface ProxyTarget {
  protocol: string;
  host: string;
  hostname: string;
  port: string;
}

/** What every attempt shares: the transport, the deadline sweep and the timeouts. */
export interface AttemptContext {
  readonly sweep: DeadlineSweep;
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Hands the attempt to the transport, which calls its onProxyReq/onProxyRes/onProxyError. */
  send(attempt: UpstreamAttempt): void;
}

type CarryingRequest = IncomingMessage & { upstreamAttempt?: UpstreamAttempt };

/**
 * One try of a request on one backend (Envoy's upstream request): sends it, watches its deadlines
 * (connect, headers, then idle between chunks), hands what comes back to its owner, and releases its
 * lease exactly once. The only file that knows http-proxy-middleware.
 */
export class UpstreamAttempt implements Deadlined {
  phase: 'headers' | 'idle' = 'headers';
  readonly startedAt = Date.now();
  chunks = 0;
  seenChunks = 0;
  idleSince = 0;
  done = false;
  proxyReq: http.ClientRequest | null = null;
  /** The backend's response, once its headers arrived. */
  response: IncomingMessage | null = null;
  /** The request went out in full and no answer came within the headers timeout: it may still be generating. */
  headersTimedOut = false;
  /** The backend's stream is held because the client is not reading (its silence is then not the backend's). */
  private heldForClient = false;

  constructor(
    private readonly ctx: AttemptContext,
    private readonly owner: AttemptOwner,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly lease: Lease,
    /** The request body to send (already read, never re-serialised). */
    private readonly body: Buffer,
    readonly target: ProxyTarget,
  ) {}

  get backend(): Backend {
    return this.lease.backend;
  }

  /** Sends the request; connect and response headers must come within the headers timeout. */
  start(): void {
    (this.req as CarryingRequest).upstreamAttempt = this;
    this.ctx.sweep.watch(this);
    this.ctx.send(this);
  }

  onProxyReq(proxyReq: http.ClientRequest): void {
    if (this.done) {
      proxyReq.destroy();
      return;
    }
    this.proxyReq = proxyReq;
    const socket = proxyReq.socket as Socket | null;
    if (socket && socket.connecting) {
      // Only a new connection gets a timer: a reused keep-alive socket is already connected.
      const connectTimer = setTimeout(
        () => this.fail(`connect timeout after ${this.ctx.connectTimeoutMs} ms`),
        this.ctx.connectTimeoutMs,
      );
      socket.once('connect', () => clearTimeout(connectTimer));
      socket.once('close', () => clearTimeout(connectTimer));
    }
    if (this.req.method === 'GET' || this.req.method === 'HEAD') proxyReq.end();
    else {
      proxyReq.setHeader('Content-Length', this.body.length);
      proxyReq.end(this.body);
    }
  }

  onProxyRes(response: IncomingMessage): void {
    if (this.done || (response as IncomingMessage & { req?: unknown }).req !== this.proxyReq) {
      response.destroy();
      return;
    }
    this.response = response;
    this.owner.onUpstreamHeaders(this, response);
  }

  /** An error from the transport; `target` tells this attempt's from a late one of an earlier try. */
  onProxyError(err: NodeJS.ErrnoException, target: unknown): void {
    if (this.done || (target !== undefined && target !== this.target)) return;
    if (this.response !== null) this.owner.onUpstreamBroken(this, err.message);
    else this.owner.onUpstreamFailure(this, `${err.code ?? 'error'}: ${err.message}`);
  }

  onDeadline(which: 'headers' | 'idle'): void {
    if (this.done) return;
    if (which === 'idle') {
      if (this.heldForClient) this.owner.onClientStalled(this);
      else this.owner.onUpstreamBroken(this, `no data for ${this.ctx.idleTimeoutMs} ms`);
      return;
    }
    this.headersTimedOut = this.proxyReq !== null && this.proxyReq.writableFinished;
    this.fail(`headers timeout after ${this.ctx.headersTimeoutMs} ms`);
  }

  /** Streams the body to the owner chunk by chunk; from now on a chunk must come within the idle limit. */
  relay(): void {
    const response = this.response!;
    this.idleDeadline();
    response.on('data', (chunk: Buffer) => {
      if (this.done) return;
      this.chunks++;
      this.owner.onUpstreamData(this, chunk);
    });
    response.once('end', () => {
      if (this.done) return;
      // http-proxy emits 'end' also for a body cut short; `complete` tells a clean end apart.
      if (!response.complete) this.owner.onUpstreamBroken(this, 'the backend closed the stream early');
      else this.owner.onUpstreamEnd(this);
    });
    response.once('error', () => {
      if (!this.done) this.owner.onUpstreamBroken(this, 'the backend connection failed mid-stream');
    });
    response.once('close', () => {
      if (!this.done && !response.complete)
        this.owner.onUpstreamBroken(this, 'the backend connection closed mid-stream');
    });
  }

  /** Reads a (bounded) error body for the owner; an error body that never ends is held to the idle limit too. */
  collect(): void {
    const response = this.response!;
    this.idleDeadline();
    const chunks: Buffer[] = [];
    let size = 0;
    response.on('data', (c: Buffer) => {
      this.chunks++;
      if (size < MAX_ERROR_BODY) chunks.push(c);
      size += c.length;
    });
    const done = () => {
      if (!this.done) this.owner.onUpstreamBody(this, Buffer.concat(chunks));
    };
    response.once('end', done);
    response.once('error', done);
    response.once('aborted', done);
  }

  /** The client is slow: hold the backend's stream until the client's buffer drains. */
  pauseUntilDrain(): void {
    const response = this.response!;
    response.pause();
    this.heldForClient = true;
    this.res.once('drain', () => {
      this.heldForClient = false;
      // The backend's idle clock starts again now: the pause was the client's.
      this.seenChunks = this.chunks;
      this.idleSince = Date.now();
      response.resume();
    });
  }

  /** Ends the try (aborting the upstream request when `why` says it failed) and releases the lease. */
  end(why: string | null): void {
    if (this.done) return;
    this.done = true;
    this.ctx.sweep.unwatch(this);
    if (why !== null) {
      this.response?.destroy();
      this.proxyReq?.destroy();
    }
    this.lease.release();
  }

  private idleDeadline(): void {
    this.phase = 'idle';
    this.seenChunks = this.chunks;
    this.idleSince = Date.now();
  }

  private fail(why: string): void {
    if (!this.done) this.owner.onUpstreamFailure(this, why);
  }
}

const NO_BODY_PIPE = { pipe: () => undefined } as any;

/**
 * The way out for model requests: http-proxy-middleware over one keep-alive agent (LIFO, so a
 * burst reuses the warmest sockets), with our own response handling (selfHandleResponse) and the
 * body we already read (never re-serialised).
 */
@Injectable()
export class UpstreamTransport implements AttemptContext, OnModuleDestroy {
  readonly sweep: DeadlineSweep;
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  private readonly agent = new http.Agent({
    keepAlive: true,
    maxSockets: Infinity,
    maxFreeSockets: 1024,
    scheduling: 'lifo',
  });
  /** https backends: TLS verified against the system's certificates plus BACKEND_CA_FILE. */
  private readonly tlsAgent: https.Agent;
  private readonly proxy: RequestHandler<IncomingMessage, ServerResponse>;
  private readonly tlsProxy: RequestHandler<IncomingMessage, ServerResponse>;
  private readonly targets = new WeakMap<Backend, ProxyTarget>();

  constructor(@Inject(BALANCER_CONFIG) config: BalancerConfig) {
    this.connectTimeoutMs = config.connectTimeoutMs;
    this.headersTimeoutMs = config.headersTimeoutMs;
    this.idleTimeoutMs = config.idleStreamTimeoutMs;
    this.sweep = new DeadlineSweep(config.headersTimeoutMs, config.idleStreamTimeoutMs);
    this.tlsAgent = new https.Agent({
      keepAlive: true,
      maxSockets: Infinity,
      maxFreeSockets: 1024,
      scheduling: 'lifo',
      ...backendTlsOptions(config.backendCa),
    });
    this.proxy = proxyOver(this.agent);
    this.tlsProxy = proxyOver(this.tlsAgent);
  }

  /** The proxy target of a backend, made once. */
  targetOf(b: Backend): ProxyTarget {
    let t = this.targets.get(b);
    if (t === undefined) {
      const hostname = b.url.hostname.startsWith('[') ? b.url.hostname.slice(1, -1) : b.url.hostname;
      this.targets.set(b, (t = { protocol: b.url.protocol, host: b.host, hostname, port: b.url.port }));
    }
    return t;
  }

  send(attempt: UpstreamAttempt): void {
    const proxy = attempt.target.protocol === 'https:' ? this.tlsProxy : this.proxy;
    void proxy(attempt.req, attempt.res, (err?: unknown) => {
      if (err) attempt.onProxyError(err as NodeJS.ErrnoException, attempt.target);
    });
  }

  onModuleDestroy(): void {
    this.sweep.stop();
    this.agent.destroy();
    this.tlsAgent.destroy();
  }
}

/** http-proxy-middleware over one agent, our own response handling (each attempt handles its events). */
function proxyOver(agent: http.Agent): RequestHandler<IncomingMessage, ServerResponse> {
  const attemptOf = (req: IncomingMessage) => (req as CarryingRequest).upstreamAttempt;
  return createProxyMiddleware<IncomingMessage, ServerResponse>({
    router: (req) => attemptOf(req)!.target as unknown as string,
    changeOrigin: true,
    // The path goes upstream as the client sent it (origin-form, already classified by path):
    // this skips http-proxy's url.parse of every request URL.
    toProxy: true,
    agent,
    selfHandleResponse: true,
    ejectPlugins: true,
    buffer: NO_BODY_PIPE,
    plugins: [
      (server) => {
        server.on('proxyReq', (proxyReq, req) => {
          const attempt = attemptOf(req);
          if (attempt === undefined) proxyReq.destroy();
          else attempt.onProxyReq(proxyReq);
        });
        server.on('proxyRes', (proxyRes, req) => {
          const attempt = attemptOf(req);
          if (attempt === undefined) proxyRes.destroy();
          else attempt.onProxyRes(proxyRes);
        });
        server.on('error', (err, req, _res, target) =>
          attemptOf(req)?.onProxyError(err as NodeJS.ErrnoException, target),
        );
        server.on('econnreset', () => undefined);
      },
    ],
  });
}
