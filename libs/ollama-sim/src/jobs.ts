import type { ServerResponse } from 'http';
import type { SimServerState } from './state';
import type { DiskModel, Lease, Runner, Waiter } from './scheduler';
import { contextTokens, embeddingBase64, embeddingFor, generateText, WordGenerator } from './text';

export const BUSY_MESSAGE = 'server busy, please try again.  maximum pending requests exceeded';
const JSON_TYPE = 'application/json; charset=utf-8';

// One ISO timestamp string per millisecond, shared by every stream (created_at on each chunk).
let isoMs = 0;
let isoStr = '';
export function nowIso(): string {
  const t = Date.now();
  if (t !== isoMs) {
    isoMs = t;
    isoStr = new Date(t).toISOString();
  }
  return isoStr;
}

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

/** `{"error":"..."}` on /api/*, OpenAI's `{"error":{message,type,param,code}}` on /v1/*. */
export function sendError(res: ServerResponse, status: number, message: string, openai = false): void {
  sendJson(
    res,
    status,
    openai ? { error: { message, type: openAiErrorType(status), param: null, code: null } } : { error: message },
  );
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

export type CompletionKind = 'generate' | 'chat' | 'oai-chat' | 'oai-completion';

export interface CompletionRequest {
  kind: CompletionKind;
  /** Model name as the client wrote it (echoed back, like Ollama does). */
  modelLabel: string;
  stream: boolean;
  seed: number;
  promptTokens: number;
  outputTokens: number;
  /** The output length came from num_predict / max_tokens: the answer ends with done_reason "length". */
  limited: boolean;
  includeUsage: boolean;
}

let oaiCounter = Math.floor(Math.random() * 1000);

/**
 * One generate/chat/OpenAI completion. Streams one pre-serialised line per token on a single
 * re-armed timer; a stream:false answer waits the same total time on one timer, then sends one object.
 */
export class CompletionJob extends SlotJob {
  private timer: NodeJS.Timeout | undefined;
  private sent = 0;
  private firstTokenAt = 0;
  private gen: WordGenerator | undefined;
  private prefix = '';
  private mid = '';
  private suffix = '';
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly id: string;

  constructor(
    state: SimServerState,
    res: ServerResponse,
    model: DiskModel,
    keepAliveMs: number | undefined,
    private readonly req: CompletionRequest,
  ) {
    super(state, res, model, keepAliveMs);
    this.id = req.kind === 'oai-chat' ? `chatcmpl-${++oaiCounter}` : `cmpl-${++oaiCounter}`;
  }

  protected start(): void {
    const cfg = this.state.config;
    const promptMs = (this.req.promptTokens / cfg.promptTokensPerSecond) * 1000;
    this.timer = setTimeout(this.req.stream ? this.firstToken : this.finishWhole, this.req.stream ? promptMs : promptMs + this.req.outputTokens * this.tokenMs());
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
    const name = JSON.stringify(this.req.modelLabel);
    const k = this.req.kind;
    if (k === 'generate' || k === 'chat') {
      this.res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
      this.prefix = `{"model":${name},"created_at":"`;
      this.mid = k === 'generate' ? '","response":"' : '","message":{"role":"assistant","content":"';
      this.suffix = k === 'generate' ? '","done":false}\n' : '"},"done":false}\n';
    } else {
      this.res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
      if (k === 'oai-chat') {
        this.prefix = `data: {"id":"${this.id}","object":"chat.completion.chunk","created":${this.created},"model":${name},"system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"`;
        this.suffix = '"},"finish_reason":null}]}\n\n';
      } else {
        this.prefix = `data: {"id":"${this.id}","object":"text_completion","created":${this.created},"choices":[{"text":"`;
        this.suffix = `","index":0,"finish_reason":null}],"model":${name},"system_fingerprint":"fp_ollama"}\n\n`;
      }
    }
    this.gen = new WordGenerator(this.req.seed);
    if (this.req.outputTokens === 0) {
      this.finishStream();
      return;
    }
    this.timer = setTimeout(this.nextToken, this.tokenMs());
    this.nextToken();
  };

  private readonly nextToken = (): void => {
    if (this.finished) return;
    const word = this.gen!.next();
    const k = this.req.kind;
    this.res.write(k === 'generate' || k === 'chat' ? this.prefix + nowIso() + this.mid + word + this.suffix : this.prefix + word + this.suffix);
    this.sent++;
    this.state.counters.tokens++;
    const stopAfter = this.state.config.faults.stopMidStreamAfterChunks;
    if (stopAfter !== undefined && this.sent >= stopAfter) {
      this.cutConnection();
      return;
    }
    if (this.sent >= this.req.outputTokens) {
      clearTimeout(this.timer);
      this.timer = setTimeout(this.finishStream, 0);
      return;
    }
    if (this.sent > 1) this.timer!.refresh();
  };

  private metrics(evalCount: number): Record<string, number> {
    const end = performance.now();
    const grantedAt = this.grantedAt;
    const firstAt = this.firstTokenAt || end;
    const m: Record<string, number> = {
      total_duration: Math.max(1, Math.round((end - this.arrivedPerf) * 1e6)),
      load_duration: this.lease?.loadNs || 1_000_000 + (this.req.seed % 2_000_000),
      prompt_eval_count: this.req.promptTokens,
      prompt_eval_duration: Math.max(1, Math.round((firstAt - grantedAt) * 1e6)),
      eval_count: evalCount,
      eval_duration: Math.max(1, Math.round((end - firstAt) * 1e6)),
    };
    for (const key of Object.keys(m)) if (!m[key]) delete m[key];
    return m;
  }

  private doneReason(): string {
    return this.req.limited ? 'length' : 'stop';
  }

  private readonly finishStream = (): void => {
    if (this.finished) return;
    const k = this.req.kind;
    const reason = this.doneReason();
    let last: string;
    if (k === 'generate' || k === 'chat') {
      const obj: Record<string, unknown> = { model: this.req.modelLabel, created_at: nowIso() };
      if (k === 'generate') obj.response = '';
      else obj.message = { role: 'assistant', content: '' };
      obj.done = true;
      obj.done_reason = reason;
      Object.assign(obj, this.metrics(this.sent));
      if (k === 'generate') obj.context = contextTokens(this.req.seed, Math.min(this.req.promptTokens + this.sent, 8192));
      last = JSON.stringify(obj) + '\n';
    } else {
      const base = { id: this.id, object: k === 'oai-chat' ? 'chat.completion.chunk' : 'text_completion', created: this.created, model: this.req.modelLabel, system_fingerprint: 'fp_ollama' };
      const choices =
        k === 'oai-chat'
          ? [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: reason }]
          : [{ text: '', index: 0, finish_reason: reason }];
      last = `data: ${JSON.stringify({ ...base, choices })}\n\n`;
      if (this.req.includeUsage) {
        last += `data: ${JSON.stringify({ ...base, choices: [], usage: this.usage(this.sent) })}\n\n`;
      }
      last += 'data: [DONE]\n\n';
    }
    this.complete();
    this.res.end(last);
  };

  private usage(n: number): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
    return { prompt_tokens: this.req.promptTokens, completion_tokens: n, total_tokens: this.req.promptTokens + n };
  }

  private readonly finishWhole = (): void => {
    if (this.finished) return;
    this.firstTokenAt = this.grantedAt + (this.req.promptTokens / this.state.config.promptTokensPerSecond) * 1000;
    if (this.state.config.faults.stopMidStreamAfterChunks !== undefined) {
      this.res.socket?.destroy();
      return;
    }

    const n = this.req.outputTokens;
    const text = generateText(this.req.seed, n);
    this.state.counters.tokens += n;
    const k = this.req.kind;
    const reason = this.doneReason();
    let body: Record<string, unknown>;
    if (k === 'generate' || k === 'chat') {
      body = { model: this.req.modelLabel, created_at: nowIso() };
      if (k === 'generate') body.response = text;
      else body.message = { role: 'assistant', content: text };
      body.done = true;
      body.done_reason = reason;
      Object.assign(body, this.metrics(n));
      if (k === 'generate') body.context = contextTokens(this.req.seed, Math.min(this.req.promptTokens + n, 8192));
    } else if (k === 'oai-chat') {
      body = {
        id: this.id,
        object: 'chat.completion',
        created: this.created,
        model: this.req.modelLabel,
        system_fingerprint: 'fp_ollama',
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: reason }],
        usage: this.usage(n),
      };
    } else {
      body = {
        id: this.id,
        object: 'text_completion',
        created: this.created,
        model: this.req.modelLabel,
        system_fingerprint: 'fp_ollama',
        choices: [{ text, index: 0, finish_reason: reason }],
        usage: this.usage(n),
      };
    }
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
  ) {
    super(state, res, model, keepAliveMs);
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
  ) {
    super(state, res, model, keepAliveMs);
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
    const vectors = this.inputs.map((t) => embeddingFor(t, dims));
    let body: unknown;
    if (this.kind === 'embeddings') body = { embedding: vectors[0] ?? [] };
    else if (this.kind === 'embed') {
      const totalNs = Math.max(1, Math.round((performance.now() - this.arrivedPerf) * 1e6));
      const b: Record<string, unknown> = { model: this.label, embeddings: vectors, total_duration: totalNs, load_duration: this.lease?.loadNs || 1_000_000, prompt_eval_count: this.promptTokens };
      if (!b.prompt_eval_count) delete b.prompt_eval_count;
      body = b;
    } else {
      body = {
        object: 'list',
        data: vectors.map((v, index) => ({ object: 'embedding', embedding: this.base64 ? embeddingBase64(v) : v, index })),
        model: this.label,
        usage: { prompt_tokens: this.promptTokens, total_tokens: this.promptTokens },
      };
    }
    this.complete();
    sendJson(this.res, 200, body);
  };
}
