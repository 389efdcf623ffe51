import { createHash } from 'crypto';
import * as http from 'http';
import type { IncomingMessage, ServerResponse } from 'http';
import * as net from 'net';
import {
  defaultCapabilities,
  normalizeModelName,
  parseKeepAlive,
  resolveConfig,
  routeEnabled,
  type ResolvedSimConfig,
  type SimConfig,
  type SimModel,
  type SimRoutes,
} from './config';
import {
  BUSY_MESSAGE,
  CompletionJob,
  EmbedJob,
  LoadJob,
  loadReply,
  sendEmpty,
  sendError,
  sendJson,
  type CompletionKind,
  type EmbedKind,
  type ErrorShape,
} from './jobs';
import { planAnswer } from './plan';
import { parseCompletion } from './requests';
import {
  AnthropicSurface,
  OllamaChatSurface,
  OllamaGenerateSurface,
  OpenAiChatSurface,
  OpenAiCompletionSurface,
  ResponsesSurface,
  type Surface,
} from './surfaces';
import { NvmlStateWriter } from './nvml-state';
import { runnerOptions, Scheduler, toDiskModel, trainContext, type DiskModel, type Runner } from './scheduler';
import { newCounters, type SimCounters, type SimServerState } from './state';
import { countTokens, nextRandom, randomOf } from './text';

export interface SimServerOptions extends SimConfig {
  /** 0 or absent = a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
}

export interface SimModelStats {
  requests: number;
  loaded: boolean;
  state?: 'loading' | 'ready';
  active: number;
  queued: number;
  slots?: number;
}

export interface SimStats {
  name: string;
  uptimeMs: number;
  requests: number;
  byRoute: Record<string, number>;
  /** Error answers sent, by status. */
  errorsByStatus: Record<string, number>;
  /** Requests holding a slot now. */
  active: number;
  /** Requests waiting for a load or a slot now. */
  queued: number;
  loaded: string[];
  loads: number;
  evictions: number;
  unloads: number;
  expirations: number;
  /** Runners reloaded because a request needed other runner options (num_ctx, num_batch, num_gpu, use_mmap, num_thread, shift). */
  reloads: number;
  aborted: number;
  tokens: number;
  pulls: number;
  openConnections: number;
  connections: number;
  refusedSockets: number;
  refusingConnections: boolean;
  usedVramBytes: number;
  nvmlWrites: number;
  models: Record<string, SimModelStats>;
}

export interface SimServer {
  readonly port: number;
  readonly url: string;
  /** The configuration in force (defaults filled in). */
  config(): ResolvedSimConfig;
  stats(): SimStats;
  resetStats(): void;
  /** Merges a partial config (faults merge key by key; false/null clears one). */
  update(partial: SimConfig): Promise<void>;
  /** Loads a model instantly (no load time); false if it is not on disk or memory is held by busy models. */
  load(model: string): boolean;
  /** Unloads now (or once its running requests end); false if not loaded. */
  unload(model: string): boolean;
  /** Destroys every socket and timer. Idempotent. */
  close(): Promise<void>;
  kill(): Promise<void>;
}

const MODEL_ROUTES = new Set([
  '/api/generate',
  '/api/chat',
  '/api/embed',
  '/api/embeddings',
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/messages',
  '/v1/responses',
]);
/** The model-management routes (POST; /api/delete also DELETE). */
const MANAGEMENT_ROUTES = ['/api/show', '/api/pull', '/api/push', '/api/create', '/api/copy', '/api/delete'];
/** Every other route Ollama registers (for some method): another method there is Gin's 405. */
const OTHER_ROUTES = new Set([
  '/',
  '/api/version',
  '/api/tags',
  '/api/status',
  '/api/ps',
  '/v1/models',
  ...MANAGEMENT_ROUTES,
]);
/** Newer routes an instance can switch off (then Gin's 404, like an Ollama that predates them). */
const GATED_ROUTES: Record<string, keyof SimRoutes> = {
  '/v1/messages': 'messages',
  '/v1/responses': 'responses',
  '/api/status': 'status',
};

function errorShape(path: string): ErrorShape {
  return path === '/v1/messages' ? 'anthropic' : path.startsWith('/v1/') ? 'openai' : 'ollama';
}

/** Ollama's full model name, as its capability errors print it (registry.ollama.ai/library/llama3.2:latest). */
function fullModelName(name: string): string {
  const parts = name.split('/');
  if (parts.length === 1) return `registry.ollama.ai/library/${name}`;
  if (parts.length === 2) return `registry.ollama.ai/${name}`;
  return name;
}
const MAX_BODY = 64 * 1024 * 1024;
/** Ollama's default allowed origins (localhost, 127.0.0.1, 0.0.0.0 on any port, and app schemes). */
const LOCAL_ORIGIN =
  /^(https?:\/\/(localhost|127\.0\.0\.1|0\.0\.0\.0)(:\d+)?|app:\/\/.*|file:\/\/.*|tauri:\/\/.*|vscode-webview:\/\/.*)$/;
const FOREVER = '2318-07-31T00:00:00Z';
/** What Go's time.Now().Add saturates at is FOREVER; past it (or past what a Date holds) is shown as FOREVER. */
const MAX_DATE_MS = Date.parse(FOREVER);

type Body = Record<string, any>;

/** Go's encoding/json wording, which is what Ollama answers for a bad body. */
function parseJsonBody(buf: Buffer): { value?: Body; error?: string } {
  const text = buf.toString('utf8');
  if (text.trim() === '') return { error: 'missing request body' };
  try {
    const v = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      return {
        error: `json: cannot unmarshal ${Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v === 'string' ? 'string' : typeof v} into Go value of type api.Request`,
      };
    }
    return { value: v };
  } catch (e) {
    const msg = (e as Error).message;
    if (/end of JSON input|Unterminated/i.test(msg)) return { error: 'unexpected EOF' };
    const pos = /at position (\d+)/.exec(msg);
    const tok = /Unexpected token '?(.)'?/.exec(msg);
    const ch = pos ? text.charAt(Number(pos[1])) : tok ? tok[1] : text.trim().charAt(0);
    return { error: `invalid character '${ch}' looking for beginning of value` };
  }
}

function guessSize(name: string): number {
  const m = /[:-](\d+(?:\.\d+)?)b\b/.exec(name);
  return m ? Math.round(Number(m[1]) * 0.6e9) : 1_000_000_000;
}

class SimServerImpl implements SimServer {
  cfg: ResolvedSimConfig;
  readonly sched: Scheduler;
  counters: SimCounters = newCounters();
  private disk = new Map<string, DiskModel>();
  private readonly blobs = new Set<string>();
  private readonly modelStats = new Map<string, number>();
  private readonly sockets = new Set<net.Socket>();
  /** Sockets with a request in progress (the others are idle keep-alive connections). */
  private readonly busySockets = new Set<net.Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly http: http.Server;
  private listener: net.Server | undefined;
  private refusing = false;
  private relistening: Promise<void> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private dice: number;
  private nvml: NvmlStateWriter | undefined;
  private readonly startedAt = Date.now();
  /** What jobs see (config and counters follow updates and resets). */
  private readonly state: SimServerState;
  port = 0;
  url = '';

  constructor(
    opts: SimServerOptions,
    private readonly host: string,
  ) {
    const { port: _p, host: _h, ...cfg } = opts;
    this.cfg = resolveConfig(cfg);
    this.dice = this.cfg.seed >>> 0;
    this.setDisk(this.cfg.models);
    this.sched = new Scheduler(this.cfg);
    for (const n of this.cfg.loaded) this.load(n);
    if (this.cfg.nvml) this.startNvml();
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    this.state = {
      get config() {
        return self.cfg;
      },
      sched: this.sched,
      get counters() {
        return self.counters;
      },
    };
    this.http = http.createServer(this.onRequest);
    this.http.keepAliveTimeout = 65_000;
    this.http.headersTimeout = 0;
    this.http.requestTimeout = 0;
    this.http.timeout = 0;
  }

  config(): ResolvedSimConfig {
    return this.cfg;
  }

  async listen(port: number): Promise<void> {
    await this.openListener(port);
    this.url = `http://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
    if (this.cfg.faults.refuseConnections) await this.applyRefuse(true);
  }

  private openListener(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const l = net.createServer({ noDelay: true }, this.onConnection);
      l.once('error', reject);
      l.listen({ port, host: this.host, backlog: 4096 }, () => {
        l.off('error', reject);
        l.on('error', (e) => process.stderr.write(`ollama-sim ${this.cfg.name}: listener error ${e.message}\n`));
        this.port = (l.address() as net.AddressInfo).port;
        this.listener = l;
        resolve();
      });
    });
  }

  private readonly onConnection = (socket: net.Socket): void => {
    if (this.closed || this.refusing) {
      this.counters.refusedSockets++;
      socket.destroy();
      return;
    }
    this.counters.connections++;
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.busySockets.delete(socket);
    });
    this.http.emit('connection', socket);
  };

  private async applyRefuse(on: boolean): Promise<void> {
    if (on === this.refusing) return;
    this.refusing = on;
    if (on) {
      // net.Server.close() stops accepting at once; its callback would wait for open connections.
      this.listener?.close();
      this.listener = undefined;
      for (const s of this.sockets) if (!this.busySockets.has(s)) s.destroy();
      return;
    }
    if (this.closed) return;
    // Another process may have taken the port meanwhile: retry for a while rather than fail the update.
    for (let attempt = 0; ; attempt++) {
      try {
        await this.openListener(this.port);
        return;
      } catch (e) {
        if (attempt >= 50 || this.closed || this.refusing) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private setDisk(models: SimModel[]): void {
    const old = this.disk;
    this.disk = new Map();
    for (const m of models) {
      const d = toDiskModel(m, old.get(normalizeModelName(m.name))?.modifiedAt);
      this.disk.set(d.name, d);
    }
  }

  private startNvml(): void {
    this.nvml = new NvmlStateWriter(this.cfg.nvml!, this.sched);
    this.sched.onChange = () => this.nvml?.markDirty();
    this.nvml.writeNow();
  }

  private track(t: NodeJS.Timeout): void {
    this.timers.add(t);
  }

  // ---------------------------------------------------------------- requests

  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    this.counters.requests++;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const isSim = path.startsWith('/_sim/');
    if (this.refusing && !isSim) {
      this.counters.refusedSockets++;
      req.socket.destroy();
      return;
    }
    const socket = req.socket;
    this.busySockets.add(socket);
    res.once('close', () => this.busySockets.delete(socket));
    const method = req.method ?? 'GET';
    // CORS as Ollama's default OLLAMA_ORIGINS does it: local origins allowed, others not.
    const origin = req.headers.origin;
    const allowed = typeof origin === 'string' && LOCAL_ORIGIN.test(origin);
    if (allowed) res.setHeader('Access-Control-Allow-Origin', origin);
    if (method === 'OPTIONS') {
      req.resume();
      if (!allowed) {
        res.writeHead(403, { 'Content-Length': 0 });
        res.end();
        return;
      }
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS',
        'Access-Control-Allow-Headers': 'Authorization,Content-Type,User-Agent,Accept,X-Requested-With',
        'Access-Control-Max-Age': '43200',
        Vary: 'Origin',
      });
      res.end();
      return;
    }
    if (method === 'GET' || method === 'HEAD') {
      req.resume();
      this.afterBody(method, path, Buffer.alloc(0), req, res, isSim);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        sendError(res, 413, 'request body too large');
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_BODY) return;
      this.afterBody(method, path, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks), req, res, isSim);
    });
  };

  private afterBody(
    method: string,
    path: string,
    body: Buffer,
    req: IncomingMessage,
    res: ServerResponse,
    isSim: boolean,
  ): void {
    if (isSim) {
      this.simRoute(method, path, body, res);
      return;
    }
    const f = this.cfg.faults;
    if (f.hang) return; // the socket stays open until the client leaves or close() destroys it
    if (f.delayHeadersMs && f.delayHeadersMs > 0) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        if (!res.destroyed) this.route(method, path, body, req, res);
      }, f.delayHeadersMs);
      this.track(t);
      return;
    }
    this.route(method, path, body, req, res);
  }

  private fail(res: ServerResponse, status: number, message: string, shape: boolean | ErrorShape = false): void {
    this.counters.byStatus[status] = (this.counters.byStatus[status] ?? 0) + 1;
    sendError(res, status, message, shape);
  }

  private notFoundRoute(res: ServerResponse): void {
    this.plainStatus(res, 404, '404 page not found');
  }

  /**
   * No handler for this method and path: Gin's 405 where Ollama registers the path for another method
   * (its router sets HandleMethodNotAllowed), its 404 elsewhere.
   */
  private noHandler(path: string, res: ServerResponse): void {
    const known =
      MODEL_ROUTES.has(path) ||
      OTHER_ROUTES.has(path) ||
      path.startsWith('/v1/models/') ||
      path.startsWith('/api/blobs/');
    if (known) this.plainStatus(res, 405, '405 method not allowed');
    else this.notFoundRoute(res);
  }

  private plainStatus(res: ServerResponse, status: number, s: string): void {
    this.counters.byStatus[status] = (this.counters.byStatus[status] ?? 0) + 1;
    res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': s.length });
    res.end(s);
  }

  private count(method: string, path: string): void {
    const key = `${method} ${path.startsWith('/api/blobs/') ? '/api/blobs/:digest' : path.startsWith('/v1/models/') ? '/v1/models/:model' : path}`;
    this.counters.byRoute[key] = (this.counters.byRoute[key] ?? 0) + 1;
  }

  private route(method: string, path: string, raw: Buffer, req: IncomingMessage, res: ServerResponse): void {
    const get = method === 'GET' || method === 'HEAD';
    const gate = GATED_ROUTES[path];
    if (gate !== undefined && !routeEnabled(this.cfg, gate)) return this.notFoundRoute(res);
    const openai = errorShape(path);
    if (MODEL_ROUTES.has(path) && method === 'POST') {
      this.count(method, path);
      const f = this.cfg.faults;
      if (f.busy503) return this.fail(res, 503, BUSY_MESSAGE, openai);
      if (f.error500 === true || (typeof f.error500 === 'number' && this.roll() < f.error500)) {
        return this.fail(res, 500, 'llama runner process has terminated: simulated failure', openai);
      }
    }
    switch (path) {
      case '/':
        if (!get) break;
        this.count(method, path);
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 17 });
        res.end('Ollama is running');
        return;
      case '/api/version':
        if (!get) break;
        this.count(method, path);
        return sendJson(res, 200, { version: this.cfg.version });
      case '/api/tags':
        if (!get) break;
        this.count(method, path);
        return sendJson(res, 200, { models: this.tags() });
      case '/api/status':
        if (method !== 'GET') break;
        this.count(method, path);
        return sendJson(res, 200, { cloud: { disabled: false, source: 'none' } });
      case '/api/ps':
        if (method !== 'GET') break;
        this.count(method, path);
        return sendJson(res, 200, { models: this.ps() });
      case '/v1/models':
        if (method !== 'GET') break;
        this.count(method, path);
        return sendJson(res, 200, { object: 'list', data: [...this.disk.values()].map((m) => this.oaiModel(m)) });
    }
    if (method === 'GET' && path.startsWith('/v1/models/')) {
      this.count(method, path);
      const name = decodeURIComponent(path.slice('/v1/models/'.length));
      const m = this.disk.get(normalizeModelName(name));
      if (!m) return this.fail(res, 404, `model "${name}" not found`, true);
      return sendJson(res, 200, this.oaiModel(m));
    }
    if (path.startsWith('/api/blobs/') && (method === 'HEAD' || method === 'POST')) {
      this.count(method, path);
      return this.blob(method, decodeURIComponent(path.slice('/api/blobs/'.length)), raw, res);
    }
    const post = method === 'POST';
    if (!(post || (method === 'DELETE' && path === '/api/delete'))) return this.noHandler(path, res);
    if (!MODEL_ROUTES.has(path)) {
      if (!MANAGEMENT_ROUTES.includes(path)) return this.noHandler(path, res);
      this.count(method, path);
    }
    const parsed = parseJsonBody(raw);
    if (!parsed.value) return this.fail(res, 400, parsed.error!, openai);
    const body = parsed.value;
    switch (path) {
      case '/api/generate':
      case '/api/chat':
        return this.completion(path === '/api/generate' ? 'generate' : 'chat', body, res);
      case '/v1/chat/completions':
        return this.completion('oai-chat', body, res);
      case '/v1/completions':
        return this.completion('oai-completion', body, res);
      case '/v1/messages':
        return this.completion('messages', body, res);
      case '/v1/responses':
        return this.completion('responses', body, res);
      case '/api/embed':
        return this.embed('embed', body, res);
      case '/api/embeddings':
        return this.embed('embeddings', body, res);
      case '/v1/embeddings':
        return this.embed('oai-embed', body, res);
      case '/api/show':
        return this.show(body, res);
      case '/api/pull':
        return this.pull(body, res);
      case '/api/push':
        return this.push(body, res);
      case '/api/create':
        return this.create(body, res);
      case '/api/copy':
        return this.copy(body, res);
      case '/api/delete':
        return this.delete(body, res);
    }
    void req;
  }

  private roll(): number {
    this.dice = nextRandom(this.dice);
    return randomOf(this.dice);
  }

  private modelLabel(body: Body): string {
    const v = body.model ?? body.name;
    return typeof v === 'string' ? v.trim() : '';
  }

  private countModel(name: string): void {
    this.modelStats.set(name, (this.modelStats.get(name) ?? 0) + 1);
  }

  // ---------------------------------------------------------------- completions

  private completion(kind: CompletionKind, body: Body, res: ServerResponse): void {
    const shape: ErrorShape =
      kind === 'messages'
        ? 'anthropic'
        : kind === 'oai-chat' || kind === 'oai-completion' || kind === 'responses'
          ? 'openai'
          : 'ollama';
    const parsed = parseCompletion(kind, body);
    if ('error' in parsed) return this.fail(res, parsed.status, parsed.error, shape);
    const label = parsed.label;
    if (!label) return this.fail(res, 400, 'model is required', shape);
    const model = this.disk.get(normalizeModelName(label));
    if (!model) return this.fail(res, 404, `model "${label}" not found, try pulling it first`, shape);
    this.countModel(model.name);
    const chatLike = kind !== 'generate' && kind !== 'oai-completion';
    const caps = defaultCapabilities(model);
    if (!caps.includes('completion'))
      return this.fail(res, 400, `"${label}" does not support ${chatLike ? 'chat' : 'generate'}`, shape);
    const input = parsed.input;
    const thinks = caps.includes('thinking');
    if (!thinks && input.think !== undefined && input.think !== false) {
      if (!parsed.relaxThinking)
        return this.fail(res, 400, `${JSON.stringify(label)} does not support thinking`, shape);
      input.think = undefined;
    }
    if (input.tools.length > 0 && !caps.includes('tools'))
      return this.fail(res, 400, `${fullModelName(model.name)} does not support tools`, shape);
    const keepAlive = parseKeepAlive(parsed.keepAlive);
    const opts = runnerOptions(model, this.cfg.vramBytes, parsed.options, parsed.shift);

    if (parsed.loadOnly) {
      if (keepAlive === 0) {
        this.sched.unload(model.name);
        return sendJson(res, 200, loadReply(label, kind === 'chat', 'unload'));
      }
      const job = new LoadJob(this.state, res, model, keepAlive, label, kind === 'chat', opts);
      if (!this.sched.request(job)) this.fail(res, 503, BUSY_MESSAGE);
      return;
    }
    if (parsed.formatError) return this.fail(res, 500, parsed.formatError, shape);

    const cfg = this.cfg;
    const plan = planAnswer(
      input,
      { thinking: thinks, prefill: model.prefill !== false },
      {
        defaultOutputTokens: cfg.defaultOutputTokens,
        maxOutputTokens: cfg.maxOutputTokens,
        thinkingTokens: cfg.thinkingTokens,
        seed: cfg.seed,
      },
    );
    let surface: Surface;
    switch (kind) {
      case 'chat':
        surface = new OllamaChatSurface(plan, label);
        break;
      case 'generate':
        surface = new OllamaGenerateSurface(plan, label);
        break;
      case 'oai-chat':
        surface = new OpenAiChatSurface(plan, label, parsed.includeUsage);
        break;
      case 'oai-completion':
        surface = new OpenAiCompletionSurface(plan, label, parsed.includeUsage);
        break;
      case 'messages':
        surface = new AnthropicSurface(plan, label, parsed.estimatedInputTokens);
        break;
      case 'responses':
        surface = new ResponsesSurface(plan, label, parsed.echo!);
        break;
    }
    const job = new CompletionJob(this.state, res, model, keepAlive, { stream: parsed.stream, plan, surface }, opts);
    if (!this.sched.request(job)) this.fail(res, 503, BUSY_MESSAGE, shape);
  }

  private embed(kind: EmbedKind, body: Body, res: ServerResponse): void {
    const openai = kind === 'oai-embed';
    const label = this.modelLabel(body);
    if (!label) return this.fail(res, 400, 'model is required', openai);
    const model = this.disk.get(normalizeModelName(label));
    if (!model) return this.fail(res, 404, `model '${label}' not found`, openai);
    this.countModel(model.name);
    const raw = kind === 'embeddings' ? body.prompt : body.input;
    let inputs: string[];
    if (typeof raw === 'string') inputs = kind === 'embeddings' && raw === '' ? [] : [raw];
    else if (Array.isArray(raw)) inputs = raw.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
    else if (raw === undefined || raw === null) inputs = [];
    else return this.fail(res, 400, `invalid input type`, openai);
    const tokens = inputs.reduce((s, t) => s + countTokens(t), 0);
    const opts = runnerOptions(model, this.cfg.vramBytes, body.options, undefined);
    // truncate:false refuses an input longer than the runner's context instead of cutting it.
    if (body.truncate === false && inputs.some((t) => countTokens(t) > opts.numCtx))
      return this.fail(res, 400, 'the input length exceeds the context length', openai);
    const dimensions = typeof body.dimensions === 'number' && body.dimensions > 0 ? Math.floor(body.dimensions) : 0;
    const job = new EmbedJob(
      this.state,
      res,
      model,
      parseKeepAlive(body.keep_alive),
      kind,
      label,
      inputs,
      tokens,
      body.encoding_format === 'base64',
      dimensions,
      opts,
    );
    if (!this.sched.request(job)) this.fail(res, 503, BUSY_MESSAGE, openai);
  }

  // ---------------------------------------------------------------- model management

  private details(m: DiskModel): Record<string, unknown> {
    const family = m.family ?? m.name.split(/[:/]/)[0].replace(/[\d.]+$/, '') ?? 'llama';
    return {
      parent_model: '',
      format: 'gguf',
      family,
      families: [family],
      parameter_size: m.parameterSize ?? `${(m.sizeBytes / 0.6e9).toFixed(1)}B`,
      quantization_level: m.quantization ?? 'Q4_K_M',
    };
  }

  private tags(): unknown[] {
    return [...this.disk.values()]
      .sort((a, b) => b.modifiedAt.getTime() - a.modifiedAt.getTime())
      .map((m) => ({
        name: m.name,
        model: m.name,
        modified_at: m.modifiedAt.toISOString(),
        size: m.sizeBytes,
        digest: m.digest,
        details: this.details(m),
        capabilities: defaultCapabilities(m),
      }));
  }

  private expiresAt(r: Runner): number {
    if (r.keepAliveMs < 0) return Number.POSITIVE_INFINITY;
    return r.idle ? r.expiresAt || Date.now() + r.keepAliveMs : Date.now() + r.keepAliveMs;
  }

  private ps(): unknown[] {
    return [...this.sched.runners.values()]
      .map((r) => ({ r, exp: this.expiresAt(r) }))
      .sort((a, b) => b.exp - a.exp)
      .map(({ r, exp }) => ({
        name: r.model.name,
        model: r.model.name,
        size: r.model.sizeBytes,
        digest: r.model.digest,
        details: this.details(r.model),
        expires_at: exp < MAX_DATE_MS ? new Date(exp).toISOString() : FOREVER,
        size_vram: Math.min(r.model.sizeBytes, this.cfg.vramBytes),
        context_length: r.opts.numCtx,
      }));
  }

  private oaiModel(m: DiskModel): Record<string, unknown> {
    return { id: m.name, object: 'model', created: Math.floor(m.modifiedAt.getTime() / 1000), owned_by: 'library' };
  }

  private show(body: Body, res: ServerResponse): void {
    const label = this.modelLabel(body);
    if (!label) return this.fail(res, 400, 'model is required');
    const m = this.disk.get(normalizeModelName(label));
    if (!m) return this.fail(res, 404, `model '${label}' not found`);
    const d = this.details(m);
    const fam = d.family as string;
    sendJson(res, 200, {
      license: 'Simulated model: no license.',
      modelfile: `# Modelfile generated by ollama-sim\nFROM ${m.name}\n`,
      parameters: 'stop "<|eot_id|>"',
      template: '{{ .Prompt }}',
      details: d,
      model_info: {
        'general.architecture': fam,
        'general.parameter_count': Math.round(m.sizeBytes / 0.6),
        [`${fam}.context_length`]: trainContext(m),
        [`${fam}.embedding_length`]: m.embeddingDims ?? this.cfg.embeddingDims,
      },
      capabilities: defaultCapabilities(m),
      modified_at: m.modifiedAt.toISOString(),
    });
  }

  /** Streams NDJSON progress lines spread over `pullMs`, or answers one object at the end. */
  private progress(
    res: ServerResponse,
    stream: boolean,
    lines: Record<string, unknown>[],
    onDone: () => Record<string, unknown> | undefined,
  ): void {
    const step = this.cfg.pullMs / Math.max(1, lines.length);
    let i = 0;
    if (!stream) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        if (res.destroyed) return;
        const err = onDone();
        if (err) this.fail(res, 500, err.error as string);
        else sendJson(res, 200, { status: 'success' });
      }, this.cfg.pullMs);
      this.track(t);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
    const tick = (): void => {
      this.timers.delete(t);
      if (res.destroyed) return;
      if (i < lines.length) {
        res.write(JSON.stringify(lines[i++]) + '\n');
        t = setTimeout(tick, step);
        this.track(t);
        return;
      }
      const err = onDone();
      res.end(JSON.stringify(err ?? { status: 'success' }) + '\n');
    };
    let t = setTimeout(tick, 0);
    this.track(t);
  }

  private pull(body: Body, res: ServerResponse): void {
    const label = this.modelLabel(body);
    if (!label) return this.fail(res, 400, 'model is required');
    const name = normalizeModelName(label);
    this.counters.pulls++;
    this.countModel(name);
    const stream = body.stream !== false;
    const missing = name.includes('nonexistent') || this.cfg.unpullable.some((u) => normalizeModelName(u) === name);
    const NOT_FOUND = { error: 'pull model manifest: file does not exist' };
    if (missing) {
      if (!stream) return this.fail(res, 500, NOT_FOUND.error);
      return this.progress(res, true, [{ status: 'pulling manifest' }], () => NOT_FOUND);
    }
    const known = this.disk.get(name) ?? this.cfg.registry.find((r) => normalizeModelName(r.name) === name);
    const model: SimModel = known ? { ...known, name } : { name, sizeBytes: guessSize(name) };
    const digest = `sha256:${createHash('sha256').update(`blob:${name}`).digest('hex')}`;
    const total = model.sizeBytes;
    const lines: Record<string, unknown>[] = [{ status: 'pulling manifest' }];
    for (const frac of [0, 0.25, 0.5, 0.75, 1])
      lines.push({ status: `pulling ${digest.slice(7, 19)}`, digest, total, completed: Math.round(total * frac) });
    lines.push({ status: 'verifying sha256 digest' }, { status: 'writing manifest' });
    this.progress(res, stream, lines, () => {
      const d = toDiskModel(model);
      this.disk.set(d.name, d);
      this.blobs.add(digest);
      return undefined;
    });
  }

  private push(body: Body, res: ServerResponse): void {
    const label = this.modelLabel(body);
    if (!label) return this.fail(res, 400, 'model is required');
    const m = this.disk.get(normalizeModelName(label));
    const stream = body.stream !== false;
    if (!m) {
      if (!stream) return this.fail(res, 404, `model '${label}' not found`);
      return this.progress(res, true, [{ status: 'retrieving manifest' }], () => ({
        error: `model '${label}' not found`,
      }));
    }
    const digest = `sha256:${m.digest}`;
    const lines: Record<string, unknown>[] = [{ status: 'retrieving manifest' }];
    for (const frac of [0, 0.5, 1])
      lines.push({
        status: `pushing ${m.digest.slice(0, 12)}`,
        digest,
        total: m.sizeBytes,
        completed: Math.round(m.sizeBytes * frac),
      });
    lines.push({ status: 'pushing manifest' });
    this.progress(res, stream, lines, () => undefined);
  }

  private create(body: Body, res: ServerResponse): void {
    const label = this.modelLabel(body);
    if (!label) return this.fail(res, 400, 'model is required');
    const from = typeof body.from === 'string' ? body.from : undefined;
    const files = body.files && typeof body.files === 'object' ? (body.files as Record<string, string>) : undefined;
    if (!from && !files) return this.fail(res, 400, "neither 'from' or 'files' was specified");
    const base = from ? this.disk.get(normalizeModelName(from)) : undefined;
    const stream = body.stream !== false;
    if (from && !base) {
      const err = `model '${from}' not found`;
      if (!stream) return this.fail(res, 404, err);
      return this.progress(res, true, [{ status: 'parsing GGUF' }], () => ({ error: err }));
    }
    const lines: Record<string, unknown>[] = [];
    if (base) lines.push({ status: `using existing layer sha256:${base.digest}` });
    // A digest that is not a string is not echoed: String() on a client's object calls its own toString.
    for (const d of Object.values(files ?? {}))
      if (typeof d === 'string') lines.push({ status: `using existing layer ${d}` });
    lines.push({ status: 'writing manifest' });
    this.progress(res, stream, lines, () => {
      const d = toDiskModel({ ...(base ?? { sizeBytes: 1_000_000_000 }), name: label });
      this.disk.set(d.name, d);
      return undefined;
    });
  }

  private copy(body: Body, res: ServerResponse): void {
    const src = typeof body.source === 'string' ? body.source : '';
    const dst = typeof body.destination === 'string' ? body.destination : '';
    if (!src || !dst) return this.fail(res, 400, 'source and destination are required');
    const m = this.disk.get(normalizeModelName(src));
    if (!m) return this.fail(res, 404, `model '${src}' not found`);
    const d = toDiskModel({ ...m, name: dst });
    this.disk.set(d.name, d);
    sendEmpty(res, 200);
  }

  private delete(body: Body, res: ServerResponse): void {
    const label = this.modelLabel(body);
    if (!label) return this.fail(res, 400, 'model is required');
    const name = normalizeModelName(label);
    if (!this.disk.delete(name)) return this.fail(res, 404, `model '${label}' not found`);
    this.sched.unload(name);
    sendEmpty(res, 200);
  }

  private blob(method: string, digest: string, raw: Buffer, res: ServerResponse): void {
    const hex = digest.replace(/^sha256[:-]/, '');
    if (method === 'HEAD') return sendEmpty(res, this.blobs.has(`sha256:${hex}`) ? 200 : 404);
    const got = createHash('sha256').update(raw).digest('hex');
    if (got !== hex) return this.fail(res, 400, `digest mismatch, expected "${digest}", got "sha256:${got}"`);
    this.blobs.add(`sha256:${hex}`);
    sendEmpty(res, 201);
  }

  // ---------------------------------------------------------------- /_sim control

  private simRoute(method: string, path: string, raw: Buffer, res: ServerResponse): void {
    const body = (): Body | undefined => {
      if (raw.length === 0) return {};
      const p = parseJsonBody(raw);
      if (!p.value) sendError(res, 400, p.error!);
      return p.value;
    };
    if (path === '/_sim/stats' && method === 'GET') return sendJson(res, 200, this.stats());
    if (path === '/_sim/stats/reset' && method === 'POST') {
      this.resetStats();
      return sendJson(res, 200, this.stats());
    }
    if (path === '/_sim/config' && method === 'GET') return sendJson(res, 200, this.cfg);
    if (path === '/_sim/config' && method === 'POST') {
      const b = body();
      if (!b) return;
      this.update(b as SimConfig).then(
        () => sendJson(res, 200, this.cfg),
        (e: Error) => sendError(res, 400, e.message),
      );
      return;
    }
    if ((path === '/_sim/load' || path === '/_sim/unload') && method === 'POST') {
      const b = body();
      if (!b) return;
      const name = this.modelLabel(b);
      const ok = path === '/_sim/load' ? this.load(name) : this.unload(name);
      return sendJson(res, ok ? 200 : 409, { ok, loaded: [...this.sched.runners.keys()] });
    }
    this.notFoundRoute(res);
  }

  // ---------------------------------------------------------------- handle

  stats(): SimStats {
    const models: Record<string, SimModelStats> = {};
    for (const name of new Set([...this.disk.keys(), ...this.modelStats.keys(), ...this.sched.runners.keys()])) {
      const r = this.sched.runners.get(name);
      models[name] = {
        requests: this.modelStats.get(name) ?? 0,
        loaded: !!r,
        state: r?.state,
        active: r?.active ?? 0,
        queued: r?.queue.length ?? 0,
        slots: r?.slots,
      };
    }
    const c = this.counters;
    const s = this.sched.counters;
    return {
      name: this.cfg.name,
      uptimeMs: Date.now() - this.startedAt,
      requests: c.requests,
      byRoute: { ...c.byRoute },
      errorsByStatus: { ...c.byStatus },
      active: this.sched.active,
      queued: this.sched.queued,
      loaded: [...this.sched.runners.keys()],
      loads: s.loads,
      evictions: s.evictions,
      unloads: s.unloads,
      expirations: s.expirations,
      reloads: s.reloads,
      aborted: c.aborted,
      tokens: c.tokens,
      pulls: c.pulls,
      openConnections: this.sockets.size,
      connections: c.connections,
      refusedSockets: c.refusedSockets,
      refusingConnections: this.refusing,
      usedVramBytes: this.sched.usedBytes,
      nvmlWrites: this.nvml?.writes ?? 0,
      models,
    };
  }

  resetStats(): void {
    this.counters = newCounters();
    this.modelStats.clear();
    const s = this.sched.counters;
    s.loads = s.evictions = s.unloads = s.expirations = s.reloads = 0;
  }

  async update(partial: SimConfig): Promise<void> {
    if (this.closed) return;
    const next = resolveConfig(partial, this.cfg);
    this.cfg = next;
    if (partial.models) this.setDisk(next.models);
    this.sched.setConfig(next);
    if (partial.seed !== undefined) this.dice = next.seed >>> 0;
    if (partial.loaded) {
      const want = new Set(partial.loaded.map(normalizeModelName));
      for (const name of [...this.sched.runners.keys()]) if (!want.has(name)) this.sched.unload(name);
      for (const name of want) this.load(name);
    }
    if (partial.nvml) {
      if (this.nvml) this.nvml.setConfig(partial.nvml);
      else this.startNvml();
    }
    this.nvml?.markDirty();
    await this.applyRefuse(!!next.faults.refuseConnections);
  }

  load(model: string): boolean {
    const m = this.disk.get(normalizeModelName(model));
    if (!m) return false;
    return this.sched.loadNow(m);
  }

  unload(model: string): boolean {
    return this.sched.unload(normalizeModelName(model));
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.sched.shutdown();
    this.nvml?.close();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.busySockets.clear();
    this.listener?.close();
    this.listener = undefined;
    this.closing = Promise.resolve();
    return this.closing;
  }

  kill(): Promise<void> {
    return this.close();
  }
}

/** Starts a simulated Ollama server; resolves once it listens (and the NVML file, if any, exists). */
export async function startSimServer(config: SimServerOptions = {}): Promise<SimServer> {
  const s = new SimServerImpl(config, config.host ?? '127.0.0.1');
  await s.listen(config.port ?? 0);
  return s;
}
