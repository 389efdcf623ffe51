/**
 * Resuming a chat stream that broke after its first byte (STREAM_RESUME): the request goes again to
 * another backend holding the same build of the model, with the text the client already has as a
 * trailing assistant message (Ollama continues it in place: prefix + continuation is the answer),
 * and the continuation is spliced into the client's stream as if nothing had happened.
 *
 * Cheap while nothing breaks: a resumable stream only keeps references to the bytes it relayed
 * (complete NDJSON lines / SSE events; a chunk that ends mid-line holds its tail back until the line
 * is complete) and parses nothing. Only a resume parses what was delivered, and only a resumed
 * continuation is rewritten event by event.
 */

export type ResumeSurface = 'ollama' | 'openai' | 'anthropic';

/** More delivered bytes than this and the request is no longer resumable (memory stays bounded). */
const MAX_DELIVERED_BYTES = 4 * 1024 * 1024;

const LF = 0x0a;

/**
 * Whether a request may be resumed, and in which wire format: a streamed chat on /api/chat,
 * /v1/chat/completions or /v1/messages, without structured output (`format`, `response_format`:
 * half a JSON document cannot be continued safely), one choice, for a model whose template continues
 * a trailing assistant message (`models`: STREAM_RESUME_MODELS).
 */
export function resumeSurfaceOf(
  path: string,
  body: Record<string, any>,
  streamed: boolean,
  model: string,
  models: readonly string[],
): ResumeSurface | null {
  if (!streamed || !Array.isArray(body.messages) || body.messages.length === 0) return null;
  let surface: ResumeSurface;
  switch (path) {
    case '/api/chat':
      if (body.format !== undefined && body.format !== null && body.format !== '') return null;
      surface = 'ollama';
      break;
    case '/v1/chat/completions': {
      const rf = body.response_format;
      if (rf !== undefined && rf !== null && !(typeof rf === 'object' && rf.type === 'text')) return null;
      if (body.n !== undefined && body.n !== null && body.n !== 1) return null;
      surface = 'openai';
      break;
    }
    case '/v1/messages':
      if (body.output_format !== undefined || body.output_config?.format !== undefined) return null;
      surface = 'anthropic';
      break;
    default:
      return null;
  }
  return modelMatches(model, models) ? surface : null;
}

/** Whether a normalised model name matches one of the patterns (`*` wildcards). */
export function modelMatches(model: string, patterns: readonly string[]): boolean {
  for (const p of patterns) {
    if (p === '*' || p === model) return true;
    if (p.includes('*')) {
      const re = new RegExp(`^${p.split('*').map(escapeRe).join('.*')}$`);
      if (re.test(model)) return true;
    }
  }
  return false;
}

function escapeRe(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The bytes of a resumable answer the client has received, in whole lines (NDJSON) or events
 * (SSE). One per request; the chunks are kept by reference.
 */
export class DeliveredStream {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private held: Buffer | null = null;
  /** Too much was delivered to keep: no longer resumable. */
  overflow = false;

  constructor(
    readonly surface: ResumeSurface,
    /** The client's request as parsed (the resumed request is built from it). */
    readonly request: Record<string, any>,
  ) {}

  /**
   * The part of `chunk` that ends on a line (NDJSON) or event (SSE) boundary, to write now; the rest
   * is held until its line completes. Null when nothing is complete yet.
   */
  take(chunk: Buffer): Buffer | null {
    let data = chunk;
    if (this.held !== null) {
      data = Buffer.concat([this.held, chunk]);
      this.held = null;
    }
    const end = this.boundary(data);
    if (end < data.length) {
      this.held = data.subarray(end);
      if (end === 0) return null;
      data = data.subarray(0, end);
    }
    if (!this.overflow) {
      this.size += data.length;
      if (this.size > MAX_DELIVERED_BYTES) {
        this.overflow = true;
        this.chunks.length = 0;
      } else this.chunks.push(data);
    }
    return data;
  }

  /** What was held back at the end of a complete answer (a last line without its newline). */
  rest(): Buffer | null {
    const h = this.held;
    this.held = null;
    return h;
  }

  /** Drops a held partial line (the backend died in the middle of it: the client never sees it). */
  dropHeld(): void {
    this.held = null;
  }

  /** Everything delivered so far as text. */
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  /** Just past the last complete line (NDJSON) or event (SSE, a blank line) in `data`. */
  private boundary(data: Buffer): number {
    const n = data.length;
    if (this.surface === 'ollama') {
      if (n > 0 && data[n - 1] === LF) return n;
      return data.lastIndexOf(LF) + 1;
    }
    if (n > 1 && data[n - 1] === LF && data[n - 2] === LF) return n;
    const at = data.lastIndexOf('\n\n');
    return at === -1 ? 0 : at + 2;
  }
}

/** What the client has of the answer, read from the delivered bytes at resume time. */
export interface DeliveredAnswer {
  /** The answer text so far (content only). */
  text: string;
  /** Tokens delivered: content and thinking chunks (what num_predict counted). */
  tokens: number;
  /** OpenAI: the first chunk's id/created/model/system_fingerprint (every continuation chunk gets them). */
  openai?: { id: unknown; created: unknown; model: unknown; system_fingerprint: unknown };
  /** Anthropic: the index of the text block still open. */
  openIndex?: number;
}

/** Reads the delivered answer; a reason (string) when it cannot be continued now. */
export function readDelivered(surface: ResumeSurface, raw: string): DeliveredAnswer | string {
  switch (surface) {
    case 'ollama':
      return readOllama(raw);
    case 'openai':
      return readOpenAi(raw);
    case 'anthropic':
      return readAnthropic(raw);
  }
}

function readOllama(raw: string): DeliveredAnswer | string {
  let text = '';
  let tokens = 0;
  let thinkingLast = false;
  for (const line of raw.split('\n')) {
    if (line.trim() === '') continue;
    const o = parseOr(line);
    if (o === undefined) return 'a delivered line is not JSON';
    if (o.error !== undefined) return 'the stream carried an error';
    if (o.done === true) return 'the answer was complete';
    const m = o.message ?? {};
    if (Array.isArray(m.tool_calls) && m.tool_calls.length > 0) return 'a tool call was streamed';
    const thinking = typeof m.thinking === 'string' && m.thinking !== '';
    const content = typeof m.content === 'string' ? m.content : '';
    if (thinking || content !== '') tokens++;
    if (content !== '') {
      text += content;
      thinkingLast = false;
    } else if (thinking) thinkingLast = true;
  }
  if (thinkingLast || text === '') return thinkingLast ? 'thinking was streaming' : 'no text was delivered yet';
  return { text, tokens };
}

function readOpenAi(raw: string): DeliveredAnswer | string {
  let text = '';
  let tokens = 0;
  let thinkingLast = false;
  let ids: DeliveredAnswer['openai'];
  for (const ev of raw.split('\n\n')) {
    const data = sseData(ev);
    if (data === null) continue;
    if (data === '[DONE]') return 'the answer was complete';
    const o = parseOr(data);
    if (o === undefined) return 'a delivered event is not JSON';
    if (o.error !== undefined) return 'the stream carried an error';
    ids ??= { id: o.id, created: o.created, model: o.model, system_fingerprint: o.system_fingerprint };
    const choice = Array.isArray(o.choices) ? o.choices[0] : undefined;
    if (choice === undefined) return 'a usage chunk was delivered';
    if (choice.finish_reason !== null && choice.finish_reason !== undefined) return 'the answer was complete';
    const d = choice.delta ?? {};
    if (Array.isArray(d.tool_calls) && d.tool_calls.length > 0) return 'a tool call was streamed';
    const thinking =
      (typeof d.reasoning === 'string' && d.reasoning !== '') ||
      (typeof d.reasoning_content === 'string' && d.reasoning_content !== '');
    const content = typeof d.content === 'string' ? d.content : '';
    if (thinking || content !== '') tokens++;
    if (content !== '') {
      text += content;
      thinkingLast = false;
    } else if (thinking) thinkingLast = true;
  }
  if (thinkingLast || text === '') return thinkingLast ? 'thinking was streaming' : 'no text was delivered yet';
  return { text, tokens, openai: ids };
}

function readAnthropic(raw: string): DeliveredAnswer | string {
  let text = '';
  let tokens = 0;
  let open: { index: number; type: string } | null = null;
  for (const ev of raw.split('\n\n')) {
    const data = sseData(ev);
    if (data === null) continue;
    const o = parseOr(data);
    if (o === undefined) return 'a delivered event is not JSON';
    switch (o.type) {
      case 'content_block_start':
        open = { index: o.index, type: o.content_block?.type };
        if (open.type !== 'text' && open.type !== 'thinking') return 'a tool call was streamed';
        break;
      case 'content_block_delta':
        if (o.delta?.type === 'text_delta' && typeof o.delta.text === 'string') {
          text += o.delta.text;
          tokens++;
        } else if (o.delta?.type === 'thinking_delta') tokens++;
        else return 'a tool call was streamed';
        break;
      case 'content_block_stop':
        open = null;
        break;
      case 'message_delta':
      case 'message_stop':
        return 'the answer was complete';
      case 'error':
        return 'the stream carried an error';
    }
  }
  if (open === null || open.type !== 'text' || text === '')
    return open?.type === 'thinking' ? 'thinking was streaming' : 'no text block was open';
  return { text, tokens, openIndex: open.index };
}

function sseData(ev: string): string | null {
  let data: string | null = null;
  for (const line of ev.split('\n')) {
    if (line.startsWith('data:')) data = (data === null ? '' : data + '\n') + line.slice(line[5] === ' ' ? 6 : 5);
  }
  return data;
}

function parseOr(s: string): any {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/**
 * The request that continues the answer: the client's own, with the delivered text as a trailing
 * assistant message (appended to one the client sent itself), the same seed and options, and an
 * output limit lowered by the tokens already delivered (Ollama counts only new tokens).
 */
export function continuationBody(
  surface: ResumeSurface,
  request: Record<string, any>,
  delivered: DeliveredAnswer,
): Buffer | string {
  const messages: any[] = [...request.messages];
  const last = messages[messages.length - 1];
  if (last !== null && typeof last === 'object' && last.role === 'assistant') {
    if (typeof last.content !== 'string') return 'the client prefilled the answer with content blocks';
    messages[messages.length - 1] = { ...last, content: last.content + delivered.text };
  } else messages.push({ role: 'assistant', content: delivered.text });
  const out: Record<string, any> = { ...request, messages };
  const less = (v: unknown): unknown =>
    typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.max(1, v - delivered.tokens) : v;
  switch (surface) {
    case 'ollama':
      if (request.options !== null && typeof request.options === 'object' && request.options.num_predict !== undefined)
        out.options = { ...request.options, num_predict: less(request.options.num_predict) };
      break;
    case 'openai':
      if (request.max_tokens !== undefined) out.max_tokens = less(request.max_tokens);
      if (request.max_completion_tokens !== undefined) out.max_completion_tokens = less(request.max_completion_tokens);
      break;
    case 'anthropic':
      if (request.max_tokens !== undefined) out.max_tokens = less(request.max_tokens);
      break;
  }
  return Buffer.from(JSON.stringify(out));
}

/**
 * Rewrites the continuation's stream so the client sees one answer: OpenAI chunks keep the first
 * id/created/model and no second role; Anthropic's second message_start and the new text block's
 * start are dropped and its block indexes follow the open block; the final counters add the tokens
 * delivered before (done_reason / finish_reason / stop_reason are the final backend's).
 */
export class StreamSplicer {
  private held: Buffer | null = null;
  private firstBlock = true;
  private offset = 0;

  constructor(
    private readonly surface: ResumeSurface,
    private readonly delivered: DeliveredAnswer,
  ) {
    this.offset = delivered.openIndex ?? 0;
  }

  /** The rewritten bytes of the complete lines/events in `chunk` (the rest is held). */
  transform(chunk: Buffer): Buffer {
    let data = chunk;
    if (this.held !== null) {
      data = Buffer.concat([this.held, chunk]);
      this.held = null;
    }
    const sep = this.surface === 'ollama' ? '\n' : '\n\n';
    const text = data.toString('utf8');
    const end = text.lastIndexOf(sep);
    if (end === -1) {
      this.held = data;
      return EMPTY;
    }
    const whole = text.slice(0, end + sep.length);
    const restBytes = Buffer.byteLength(whole);
    if (restBytes < data.length) this.held = data.subarray(restBytes);
    let out = '';
    for (const unit of whole.split(sep)) {
      if (unit.trim() === '') continue;
      const r =
        this.surface === 'ollama'
          ? this.ollamaLine(unit)
          : this.surface === 'openai'
            ? this.openAiEvent(unit)
            : this.anthropicEvent(unit);
      if (r !== null) out += r;
    }
    return Buffer.from(out);
  }

  /** Whatever was held at the end (passed on as it is). */
  rest(): Buffer | null {
    const h = this.held;
    this.held = null;
    return h;
  }

  private ollamaLine(line: string): string {
    if (!line.includes('"done":true')) return line + '\n';
    const o = parseOr(line);
    if (o === undefined) return line + '\n';
    if (typeof o.eval_count === 'number') o.eval_count += this.delivered.tokens;
    return JSON.stringify(o) + '\n';
  }

  private openAiEvent(ev: string): string {
    const data = sseData(ev);
    if (data === null || data === '[DONE]') return ev + '\n\n';
    const o = parseOr(data);
    if (o === undefined || o.error !== undefined) return ev + '\n\n';
    const ids = this.delivered.openai;
    if (ids !== undefined) {
      o.id = ids.id;
      o.created = ids.created;
      o.model = ids.model;
      if (ids.system_fingerprint !== undefined) o.system_fingerprint = ids.system_fingerprint;
    }
    const choice = Array.isArray(o.choices) ? o.choices[0] : undefined;
    if (choice?.delta !== undefined) delete choice.delta.role;
    if (o.usage !== null && typeof o.usage === 'object' && typeof o.usage.completion_tokens === 'number') {
      o.usage.completion_tokens += this.delivered.tokens;
      if (typeof o.usage.prompt_tokens === 'number')
        o.usage.total_tokens = o.usage.prompt_tokens + o.usage.completion_tokens;
    }
    return `data: ${JSON.stringify(o)}\n\n`;
  }

  private anthropicEvent(ev: string): string | null {
    const data = sseData(ev);
    if (data === null) return ev + '\n\n';
    const o = parseOr(data);
    if (o === undefined) return ev + '\n\n';
    let prefix = '';
    switch (o.type) {
      case 'message_start':
        return null;
      case 'content_block_start':
        if (this.firstBlock) {
          this.firstBlock = false;
          // The continuation's text block is the open one, continued.
          if (o.content_block?.type === 'text') return null;
          // Anything else first: close the open text block, and number the new ones after it.
          prefix = sseEvent('content_block_stop', { type: 'content_block_stop', index: this.offset });
          this.offset++;
        }
        o.index += this.offset;
        break;
      case 'content_block_delta':
      case 'content_block_stop':
        this.firstBlock = false;
        o.index += this.offset;
        break;
      case 'message_delta':
        if (o.usage !== null && typeof o.usage === 'object' && typeof o.usage.output_tokens === 'number')
          o.usage.output_tokens += this.delivered.tokens;
        break;
    }
    return prefix + sseEvent(o.type, o);
  }
}

const EMPTY = Buffer.alloc(0);

function sseEvent(type: string, data: unknown): string {
  return `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}
