import { randomBytes } from 'crypto';
import type { ServerResponse } from 'http';
import type { SimServerState } from './state';
import type { DiskModel, Lease, Runner, Waiter } from './scheduler';
import type { Plan } from './plan';
import type { RunnerOptions } from './scheduler';
import { nowIso, type FinalInfo, type Surface } from './surfaces';
import { embeddingBase64, embeddingFor } from './text';

export { nowIso };

export const BUSY_MESSAGE = 'server busy, please try again.  maximum pending requests exceeded';
const JSON_TYPE = 'application/json; charset=utf-8';

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const s = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(s) });
  res.end(s);
}

export function sendEmpty(res: ServerResponse, status: number): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'Content-Length': 0 });
  res.end();
}

export function openAiErrorType(status: number): string {
  if (status === 400) return 'invalid_request_error';
  if (status === 404) return 'not_found_error';
  return 'api_error';
}

export type ErrorShape = 'ollama' | 'openai' | 'anthropic';

/** Anthropic's error type for a status, as Ollama's anthropic.NewError maps it. */
export function anthropicErrorType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 429:
      return 'rate_limit_error';
    case 503:
    case 529:
      return 'overloaded_error';
    default:
      return 'api_error';
  }
}

/**
 * `{"error":"..."}` on /api/*, OpenAI's `{"error":{message,type,param,code}}` on /v1/*, and
 * Anthropic's `{"type":"error","error":{type,message},"request_id"}` on /v1/messages.
 */
export function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  shape: boolean | ErrorShape = false,
): void {
  const s: ErrorShape = shape === true ? 'openai' : shape === false ? 'ollama' : shape;
  let body: unknown;
  if (s === 'openai') body = { error: { message, type: openAiErrorType(status), param: null, code: null } };
  else if (s === 'anthropic')
    body = {
      type: 'error',
      error: { type: anthropicErrorType(status), message },
      request_id: `req_${randomBytes(12).toString('hex')}`,
    };
  else body = { error: message };
  sendJson(res, status, body);
}

/**
 * Base of every request that needs a model slot: it is the scheduler's waiter itself (no extra
 * objects), frees its slot exactly once, and stops at once when the client goes away.
 */
export abstract class SlotJob implements Waiter {
  readonly arrivedAt = Date.now();
  protected readonly arrivedPerf = performance.now();
  runner?: Runner;
  done?: boolean;
  protected lease: Lease | undefined;
  protected released = false;
  protected finished = false;
  protected grantedAt = 0;

  constructor(
    protected readonly state: SimServerState,
    protected readonly res: ServerResponse,
    readonly model: DiskModel,
    readonly keepAliveMs: number | undefined,
    readonly opts?: RunnerOptions,
  ) {
    res.on('close', this.onClose);
  }

  /** Registered on `res` 'close': fires on normal end too, then does nothing. */
  private readonly onClose = (): void => {
    if (this.finished) return;
    this.finished = true;
    this.state.counters.aborted++;
    this.stop();
    if (this.lease) this.release();
    else this.state.sched.cancel(this);
  };

  onGrant(lease: Lease): void {
    this.lease = lease;
    this.grantedAt = performance.now();
    if (this.finished || this.res.destroyed) {
      this.release();
      return;
    }
    this.start();
  }

  /** Runs once the job holds a slot. */
  protected abstract start(): void;
  /** Clears timers (client gone). */
  protected abstract stop(): void;

  protected release(): void {
    if (this.released || !this.lease) return;
    this.released = true;
    this.state.sched.release(this.lease.runner);
  }

  /** Normal completion: the response is ending. */
  protected complete(): void {
    this.finished = true;
    this.release();
  }
}

export type CompletionKind = 'generate' | 'chat' | 'oai-chat' | 'oai-completion' | 'messages' | 'responses';

export interface CompletionRequest {
  stream: boolean;
  plan: Plan;
  surface: Surface;
}

/**
 * One generate/chat/OpenAI/Anthropic/Responses completion. Streams one write per planned step
 * (a thinking token, an answer token, or the tool calls) on a single re-armed timer; a
 * stream:false answer waits the same total time on one timer, then sends one object.
 */
export class CompletionJob extends SlotJob {
  private timer: NodeJS.Timeout | undefined;
  private sent = 0;
  private firstTokenAt = 0;
  private readonly steps: number;
  private pending = '';

  constructor(
    state: SimServerState,
    res: ServerResponse,
    model: DiskModel,
    keepAliveMs: number | undefined,
    private readonly req: CompletionRequest,
    opts?: RunnerOptions,
  ) {
    super(state, res, model, keepAliveMs, opts);
    const p = req.plan;
    this.steps = p.thinking.length + p.content.length + (p.toolCalls.length > 0 ? 1 : 0);
  }

  protected start(): void {
    const cfg = this.state.config;
    const promptMs = (this.req.plan.promptTokens / cfg.promptTokensPerSecond) * 1000;
    this.timer = setTimeout(
      this.req.stream ? this.firstToken : this.finishWhole,
      this.req.stream ? promptMs : promptMs + this.steps * this.tokenMs(),
    );
  }

  protected stop(): void {
    clearTimeout(this.timer);
  }

  private tokenMs(): number {
    return 1000 / this.state.config.tokensPerSecond;
  }

  /** Fault: the connection drops mid-answer (after flushing what was written, so the client sees it). */
  private cutConnection(): void {
    clearTimeout(this.timer);
    this.res.socket?.destroySoon();
  }

  private readonly firstToken = (): void => {
    this.firstTokenAt = performance.now();
    if (this.state.config.faults.stopMidStreamAfterChunks === 0) {
      this.res.socket?.destroy();
      return;
    }
    this.res.writeHead(200, this.req.surface.headers);
    this.pending = this.req.surface.open();
    if (this.steps === 0) {
      this.finishStream();
      return;
    }
    this.timer = setTimeout(this.nextToken, this.tokenMs());
    this.nextToken();
  };

  private step(i: number): string {
    const p = this.req.plan;
    const s = this.req.surface;
    if (i < p.thinking.length) return s.thinking(i);
    const j = i - p.thinking.length;
    return j < p.content.length ? s.content(j) : s.toolCalls();
  }

  private readonly nextToken = (): void => {
    if (this.finished) return;
    let out = this.step(this.sent);
    if (this.pending) {
      out = this.pending + out;
      this.pending = '';
    }
    this.res.write(out);
    this.sent++;
    this.state.counters.tokens++;
    const stopAfter = this.state.config.faults.stopMidStreamAfterChunks;
    if (stopAfter !== undefined && this.sent >= stopAfter) {
      this.cutConnection();
      return;
    }
    if (this.sent >= this.steps) {
      clearTimeout(this.timer);
      this.timer = setTimeout(this.finishStream, 0);
      return;
    }
    if (this.sent > 1) this.timer!.refresh();
  };

  private evalCount(): number {
    const p = this.req.plan;
    return p.thinking.length + p.content.length + p.toolTokens;
  }

  private final(): FinalInfo {
    const end = performance.now();
    const firstAt = this.firstTokenAt || end;
    const p = this.req.plan;
    const m: Record<string, number> = {
      total_duration: Math.max(1, Math.round((end - this.arrivedPerf) * 1e6)),
      load_duration: this.lease?.loadNs || 1_000_000 + (p.seed % 2_000_000),
      prompt_eval_count: p.promptTokens,
      prompt_eval_duration: Math.max(1, Math.round((firstAt - this.grantedAt) * 1e6)),
      eval_count: this.evalCount(),
      eval_duration: Math.max(1, Math.round((end - firstAt) * 1e6)),
    };
    for (const key of Object.keys(m)) if (!m[key]) delete m[key];
    return { doneReason: p.doneReason, evalCount: this.evalCount(), promptTokens: p.promptTokens, metrics: m };
  }

  private readonly finishStream = (): void => {
    if (this.finished) return;
    const last = this.pending + this.req.surface.close(this.final());
    this.pending = '';
    this.complete();
    this.res.end(last);
  };

  private readonly finishWhole = (): void => {
    if (this.finished) return;
    this.firstTokenAt = this.grantedAt + (this.req.plan.promptTokens / this.state.config.promptTokensPerSecond) * 1000;
    if (this.state.config.faults.stopMidStreamAfterChunks !== undefined) {
      this.res.socket?.destroy();
      return;
    }
    this.state.counters.tokens += this.steps;
    const body = this.req.surface.whole(this.final());
    this.complete();
    sendJson(this.res, 200, body);
  };
}

/** Empty generate/chat: load the model and answer `done_reason: "load"`. */
export class LoadJob extends SlotJob {
  constructor(
    state: SimServerState,
    res: ServerResponse,
    model: DiskModel,
    keepAliveMs: number | undefined,
    private readonly label: string,
    private readonly chat: boolean,
    opts?: RunnerOptions,
  ) {
    super(state, res, model, keepAliveMs, opts);
  }
  protected start(): void {
    this.complete();
    sendJson(this.res, 200, loadReply(this.label, this.chat, 'load'));
  }
  protected stop(): void {}
}

export function loadReply(label: string, chat: boolean, reason: 'load' | 'unload'): Record<string, unknown> {
  const o: Record<string, unknown> = { model: label, created_at: nowIso() };
  if (chat) o.message = { role: 'assistant', content: '' };
  else o.response = '';
  o.done = true;
  o.done_reason = reason;
  return o;
}

export type EmbedKind = 'embed' | 'embeddings' | 'oai-embed';

/** /api/embed, /api/embeddings, /v1/embeddings: prompt evaluation time, then vectors. */
export class EmbedJob extends SlotJob {
  private timer: NodeJS.Timeout | undefined;
  constructor(
    state: SimServerState,
    res: ServerResponse,
    model: DiskModel,
    keepAliveMs: number | undefined,
    private readonly kind: EmbedKind,
    private readonly label: string,
    private readonly inputs: string[],
    private readonly promptTokens: number,
    private readonly base64: boolean,
    /** Ollama's `dimensions`: vectors cut to this length and normalised again (0 = the model's own). */
    private readonly dimensions = 0,
    opts?: RunnerOptions,
  ) {
    super(state, res, model, keepAliveMs, opts);
  }
  protected start(): void {
    const ms = (this.promptTokens / this.state.config.promptTokensPerSecond) * 1000;
    this.timer = setTimeout(this.reply, ms);
  }
  protected stop(): void {
    clearTimeout(this.timer);
  }
  private readonly reply = (): void => {
    if (this.finished) return;
    const dims = this.model.embeddingDims ?? this.state.config.embeddingDims;
    let vectors = this.inputs.map((t) => embeddingFor(t, dims));
    if (this.dimensions > 0 && this.dimensions < dims)
      vectors = vectors.map((v) => renormalise(v.slice(0, this.dimensions)));
    let body: unknown;
    if (this.kind === 'embeddings') body = { embedding: vectors[0] ?? [] };
    else if (this.kind === 'embed') {
      const totalNs = Math.max(1, Math.round((performance.now() - this.arrivedPerf) * 1e6));
      const b: Record<string, unknown> = {
        model: this.label,
        embeddings: vectors,
        total_duration: totalNs,
        load_duration: this.lease?.loadNs || 1_000_000,
        prompt_eval_count: this.promptTokens,
      };
      if (!b.prompt_eval_count) delete b.prompt_eval_count;
      body = b;
    } else {
      body = {
        object: 'list',
        data: vectors.map((v, index) => ({
          object: 'embedding',
          embedding: this.base64 ? embeddingBase64(v) : v,
          index,
        })),
        model: this.label,
        usage: { prompt_tokens: this.promptTokens, total_tokens: this.promptTokens },
      };
    }
    this.complete();
    sendJson(this.res, 200, body);
  };
}

function renormalise(v: number[]): number[] {
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  return v.map((x) => Math.round((x / norm) * 1e7) / 1e7);
}
