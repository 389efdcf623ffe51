/**
 * How one planned answer goes on the wire, per API surface, streamed (one write per token) or
 * whole. Shapes follow Ollama's own writers: server/routes.go (native NDJSON),
 * middleware/openai.go + openai/openai.go (chat.completion.chunk: role on the first chunk only,
 * `reasoning` deltas, finish_reason on its own chunk with an empty delta), anthropic/anthropic.go
 * (StreamConverter: message_start, content_block_start/delta/stop per thinking, text and tool_use
 * block, message_delta with usage, message_stop; no ping), openai/responses.go
 * (ResponsesStreamConverter: response.created ... response.completed with sequence_number).
 */
import { randomBytes } from 'crypto';
import type { Plan, PlannedToolCall } from './plan';
import { contextTokens, logprobFor, type Logprob } from './text';

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

export interface FinalInfo {
  doneReason: 'stop' | 'length';
  /** Output tokens (thinking + answer + tool calls). */
  evalCount: number;
  promptTokens: number;
  /** Ollama's timing metrics (ns), zero values left out. */
  metrics: Record<string, number>;
}

export const NDJSON_HEADERS = { 'Content-Type': 'application/x-ndjson' };
export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache',
  Connection: 'keep-alive',
};

/** One surface's wire format for one answer. Stream calls: open, then one of thinking/content/toolCalls per step, then close. */
export interface Surface {
  readonly headers: Record<string, string>;
  open(): string;
  thinking(i: number): string;
  content(j: number): string;
  toolCalls(): string;
  close(f: FinalInfo): string;
  /** The stream:false body. */
  whole(f: FinalInfo): unknown;
}

function lpAt(plan: Plan, position: number, token: string): Logprob {
  return logprobFor(plan.seed, position, token, plan.topLogprobs);
}

function allLogprobs(plan: Plan): Logprob[] {
  const out: Logprob[] = [];
  plan.thinking.forEach((t, i) => out.push(lpAt(plan, i, t)));
  plan.content.forEach((t, j) => out.push(lpAt(plan, plan.thinking.length + j, t)));
  return out;
}

function nativeToolCalls(calls: PlannedToolCall[]): unknown[] {
  return calls.map((c) => ({ id: c.id, function: { index: c.index, name: c.name, arguments: c.arguments } }));
}

function openAiToolCalls(calls: PlannedToolCall[]): unknown[] {
  return calls.map((c) => ({
    id: c.id,
    index: c.index,
    type: 'function',
    function: { name: c.name, arguments: c.json },
  }));
}

// ------------------------------------------------------------------ /api/chat, /api/generate

/** /api/chat: `message.thinking`, `message.content`, `message.tool_calls` lines, then the done line. */
export class OllamaChatSurface implements Surface {
  readonly headers = NDJSON_HEADERS;
  private readonly head: string;
  constructor(
    private readonly plan: Plan,
    private readonly label: string,
  ) {
    this.head = `{"model":${JSON.stringify(label)},"created_at":"`;
  }
  open(): string {
    return '';
  }
  private lp(position: number, token: string): string {
    return this.plan.logprobs ? `,"logprobs":[${JSON.stringify(lpAt(this.plan, position, token))}]` : '';
  }
  thinking(i: number): string {
    return `${this.head}${nowIso()}","message":{"role":"assistant","content":"","thinking":"${this.plan.thinkingEsc[i]}"},"done":false${this.lp(i, this.plan.thinking[i])}}\n`;
  }
  content(j: number): string {
    return `${this.head}${nowIso()}","message":{"role":"assistant","content":"${this.plan.contentEsc[j]}"},"done":false${this.lp(this.plan.thinking.length + j, this.plan.content[j])}}\n`;
  }
  toolCalls(): string {
    return (
      JSON.stringify({
        model: this.label,
        created_at: nowIso(),
        message: { role: 'assistant', content: '', tool_calls: nativeToolCalls(this.plan.toolCalls) },
        done: false,
      }) + '\n'
    );
  }
  close(f: FinalInfo): string {
    return (
      JSON.stringify({
        model: this.label,
        created_at: nowIso(),
        message: { role: 'assistant', content: '' },
        done: true,
        done_reason: f.doneReason,
        ...f.metrics,
      }) + '\n'
    );
  }
  whole(f: FinalInfo): unknown {
    const message: Record<string, unknown> = { role: 'assistant', content: this.plan.content.join('') };
    if (this.plan.thinking.length) message.thinking = this.plan.thinking.join('');
    if (this.plan.toolCalls.length) message.tool_calls = nativeToolCalls(this.plan.toolCalls);
    const body: Record<string, unknown> = {
      model: this.label,
      created_at: nowIso(),
      message,
      done: true,
      done_reason: f.doneReason,
      ...f.metrics,
    };
    if (this.plan.logprobs) body.logprobs = allLogprobs(this.plan);
    return body;
  }
}

/** /api/generate: `thinking` and `response` lines, then the done line with `context`. */
export class OllamaGenerateSurface implements Surface {
  readonly headers = NDJSON_HEADERS;
  private readonly head: string;
  constructor(
    private readonly plan: Plan,
    private readonly label: string,
  ) {
    this.head = `{"model":${JSON.stringify(label)},"created_at":"`;
  }
  open(): string {
    return '';
  }
  private lp(position: number, token: string): string {
    return this.plan.logprobs ? `,"logprobs":[${JSON.stringify(lpAt(this.plan, position, token))}]` : '';
  }
  thinking(i: number): string {
    return `${this.head}${nowIso()}","response":"","thinking":"${this.plan.thinkingEsc[i]}","done":false${this.lp(i, this.plan.thinking[i])}}\n`;
  }
  content(j: number): string {
    return `${this.head}${nowIso()}","response":"${this.plan.contentEsc[j]}","done":false${this.lp(this.plan.thinking.length + j, this.plan.content[j])}}\n`;
  }
  toolCalls(): string {
    return '';
  }
  private context(f: FinalInfo): number[] {
    return contextTokens(this.plan.seed, Math.min(f.promptTokens + f.evalCount, 8192));
  }
  close(f: FinalInfo): string {
    return (
      JSON.stringify({
        model: this.label,
        created_at: nowIso(),
        response: '',
        done: true,
        done_reason: f.doneReason,
        context: this.context(f),
        ...f.metrics,
      }) + '\n'
    );
  }
  whole(f: FinalInfo): unknown {
    const body: Record<string, unknown> = {
      model: this.label,
      created_at: nowIso(),
      response: this.plan.content.join(''),
    };
    if (this.plan.thinking.length) body.thinking = this.plan.thinking.join('');
    Object.assign(body, { done: true, done_reason: f.doneReason, context: this.context(f), ...f.metrics });
    if (this.plan.logprobs) body.logprobs = allLogprobs(this.plan);
    return body;
  }
}

// ------------------------------------------------------------------ /v1/chat/completions, /v1/completions

let oaiCounter = Math.floor(Math.random() * 1000);

function finishReason(plan: Plan, reason: string): string {
  return reason === 'stop' && plan.toolCalls.length > 0 ? 'tool_calls' : reason;
}

function usage(f: FinalInfo): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: f.promptTokens, completion_tokens: f.evalCount, total_tokens: f.promptTokens + f.evalCount };
}

/** /v1/chat/completions as Ollama's ChatWriter writes it. */
export class OpenAiChatSurface implements Surface {
  readonly headers = SSE_HEADERS;
  readonly id = `chatcmpl-${++oaiCounter}`;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly head: string;
  private first = true;
  constructor(
    private readonly plan: Plan,
    private readonly label: string,
    private readonly includeUsage: boolean,
  ) {
    this.head = `data: {"id":"${this.id}","object":"chat.completion.chunk","created":${this.created},"model":${JSON.stringify(label)},"system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{`;
  }
  open(): string {
    return '';
  }
  private role(): string {
    if (!this.first) return '';
    this.first = false;
    return '"role":"assistant",';
  }
  private lp(position: number, token: string): string {
    return this.plan.logprobs ? `,"logprobs":{"content":[${JSON.stringify(lpAt(this.plan, position, token))}]}` : '';
  }
  thinking(i: number): string {
    return `${this.head}${this.role()}"content":"","reasoning":"${this.plan.thinkingEsc[i]}"},"finish_reason":null${this.lp(i, this.plan.thinking[i])}}]}\n\n`;
  }
  content(j: number): string {
    return `${this.head}${this.role()}"content":"${this.plan.contentEsc[j]}"},"finish_reason":null${this.lp(this.plan.thinking.length + j, this.plan.content[j])}}]}\n\n`;
  }
  toolCalls(): string {
    return `${this.head}${this.role()}"content":"","tool_calls":${JSON.stringify(openAiToolCalls(this.plan.toolCalls))}},"finish_reason":null}]}\n\n`;
  }
  private base(): Record<string, unknown> {
    return {
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.label,
      system_fingerprint: 'fp_ollama',
    };
  }
  close(f: FinalInfo): string {
    // A wholly empty answer still opens with a role chunk.
    let out = this.first ? `${this.head}${this.role()}"content":""},"finish_reason":null}]}\n\n` : '';
    out += `data: ${JSON.stringify({ ...this.base(), choices: [{ index: 0, delta: {}, finish_reason: finishReason(this.plan, f.doneReason) }] })}\n\n`;
    if (this.includeUsage) out += `data: ${JSON.stringify({ ...this.base(), choices: [], usage: usage(f) })}\n\n`;
    return out + 'data: [DONE]\n\n';
  }
  whole(f: FinalInfo): unknown {
    const message: Record<string, unknown> = { role: 'assistant', content: this.plan.content.join('') };
    if (this.plan.thinking.length) message.reasoning = this.plan.thinking.join('');
    if (this.plan.toolCalls.length) message.tool_calls = openAiToolCalls(this.plan.toolCalls);
    const choice: Record<string, unknown> = { index: 0, message, finish_reason: finishReason(this.plan, f.doneReason) };
    if (this.plan.logprobs) choice.logprobs = { content: allLogprobs(this.plan) };
    return {
      id: this.id,
      object: 'chat.completion',
      created: this.created,
      model: this.label,
      system_fingerprint: 'fp_ollama',
      choices: [choice],
      usage: usage(f),
    };
  }
}

/** /v1/completions (thinking is not part of its text, as in Ollama's CompleteWriter). */
export class OpenAiCompletionSurface implements Surface {
  readonly headers = SSE_HEADERS;
  readonly id = `cmpl-${++oaiCounter}`;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly head: string;
  private readonly tail: string;
  constructor(
    private readonly plan: Plan,
    private readonly label: string,
    private readonly includeUsage: boolean,
  ) {
    this.head = `data: {"id":"${this.id}","object":"text_completion","created":${this.created},"choices":[{"text":"`;
    this.tail = `","index":0,"finish_reason":null}],"model":${JSON.stringify(label)},"system_fingerprint":"fp_ollama"}\n\n`;
  }
  open(): string {
    return '';
  }
  thinking(): string {
    return this.head + this.tail;
  }
  content(j: number): string {
    return this.head + this.plan.contentEsc[j] + this.tail;
  }
  toolCalls(): string {
    return '';
  }
  close(f: FinalInfo): string {
    const base = {
      id: this.id,
      object: 'text_completion',
      created: this.created,
      model: this.label,
      system_fingerprint: 'fp_ollama',
    };
    let out = `data: ${JSON.stringify({ ...base, choices: [{ text: '', index: 0, finish_reason: f.doneReason }] })}\n\n`;
    if (this.includeUsage) out += `data: ${JSON.stringify({ ...base, choices: [], usage: usage(f) })}\n\n`;
    return out + 'data: [DONE]\n\n';
  }
  whole(f: FinalInfo): unknown {
    return {
      id: this.id,
      object: 'text_completion',
      created: this.created,
      model: this.label,
      system_fingerprint: 'fp_ollama',
      choices: [{ text: this.plan.content.join(''), index: 0, finish_reason: f.doneReason }],
      usage: usage(f),
    };
  }
}

// ------------------------------------------------------------------ /v1/messages

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

function stopReason(plan: Plan, reason: string): string {
  if (plan.toolCalls.length > 0) return 'tool_use';
  return reason === 'stop' ? 'end_turn' : reason === 'length' ? 'max_tokens' : 'stop_sequence';
}

/** /v1/messages: Ollama's anthropic.StreamConverter and ToMessagesResponse. */
export class AnthropicSurface implements Surface {
  readonly headers = SSE_HEADERS;
  readonly id = `msg_${randomBytes(12).toString('hex')}`;
  private index = 0;
  private thinkingStarted = false;
  private thinkingDone = false;
  private textStarted = false;
  private readonly thinkingHead: string;
  private readonly textHead: string;
  constructor(
    private readonly plan: Plan,
    private readonly label: string,
    /** Ollama's len/4 estimate of the request, reported in message_start. */
    private readonly estimatedInputTokens: number,
  ) {
    this.thinkingHead = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":';
    this.textHead = this.thinkingHead;
  }
  open(): string {
    return sse('message_start', {
      type: 'message_start',
      message: {
        id: this.id,
        type: 'message',
        role: 'assistant',
        model: this.label,
        content: [],
        usage: { input_tokens: this.estimatedInputTokens, output_tokens: 0 },
      },
    });
  }
  private stop(): string {
    return sse('content_block_stop', { type: 'content_block_stop', index: this.index });
  }
  thinking(i: number): string {
    let out = '';
    if (!this.thinkingStarted) {
      this.thinkingStarted = true;
      out += sse('content_block_start', {
        type: 'content_block_start',
        index: this.index,
        content_block: { type: 'thinking', thinking: '' },
      });
    }
    return `${out}${this.thinkingHead}${this.index},"delta":{"type":"thinking_delta","thinking":"${this.plan.thinkingEsc[i]}"}}\n\n`;
  }
  private closeThinking(): string {
    if (!this.thinkingStarted || this.thinkingDone) return '';
    this.thinkingDone = true;
    const out = this.stop();
    this.index++;
    return out;
  }
  content(j: number): string {
    let out = this.closeThinking();
    if (!this.textStarted) {
      this.textStarted = true;
      out += sse('content_block_start', {
        type: 'content_block_start',
        index: this.index,
        content_block: { type: 'text', text: '' },
      });
    }
    return `${out}${this.textHead}${this.index},"delta":{"type":"text_delta","text":"${this.plan.contentEsc[j]}"}}\n\n`;
  }
  toolCalls(): string {
    let out = this.closeThinking();
    if (this.textStarted) {
      out += this.stop();
      this.index++;
      this.textStarted = false;
    }
    for (const c of this.plan.toolCalls) {
      out += sse('content_block_start', {
        type: 'content_block_start',
        index: this.index,
        content_block: { type: 'tool_use', id: c.id, name: c.name, input: {} },
      });
      out += sse('content_block_delta', {
        type: 'content_block_delta',
        index: this.index,
        delta: { type: 'input_json_delta', partial_json: c.json },
      });
      out += this.stop();
      this.index++;
    }
    return out;
  }
  close(f: FinalInfo): string {
    let out = '';
    if (this.textStarted || (this.thinkingStarted && !this.thinkingDone)) out += this.stop();
    out += sse('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: stopReason(this.plan, f.doneReason) },
      usage: { input_tokens: f.promptTokens, output_tokens: f.evalCount },
    });
    return out + sse('message_stop', { type: 'message_stop' });
  }
  whole(f: FinalInfo): unknown {
    const content: unknown[] = [];
    if (this.plan.thinking.length) content.push({ type: 'thinking', thinking: this.plan.thinking.join('') });
    if (this.plan.content.length) content.push({ type: 'text', text: this.plan.content.join('') });
    for (const c of this.plan.toolCalls) content.push({ type: 'tool_use', id: c.id, name: c.name, input: c.arguments });
    return {
      id: this.id,
      type: 'message',
      role: 'assistant',
      model: this.label,
      // Go marshals an empty slice that was never appended to as null.
      content: content.length ? content : null,
      stop_reason: stopReason(this.plan, f.doneReason),
      usage: { input_tokens: f.promptTokens, output_tokens: f.evalCount },
    };
  }
}

// ------------------------------------------------------------------ /v1/responses

/** The request fields a Responses object echoes back. */
export interface ResponsesEcho {
  instructions: string;
  truncation?: string;
  tools: Record<string, unknown>[];
  textFormat?: Record<string, unknown>;
  reasoning?: { effort?: string; summary?: string };
  topP?: number;
  temperature?: number;
  maxOutputTokens?: number;
  background: boolean;
}

const rand6 = (): number => Math.floor(Math.random() * 999999);

/** /v1/responses: Ollama's ResponsesStreamConverter and ToResponse (stateless: store false, no previous_response_id). */
export class ResponsesSurface implements Surface {
  readonly headers = SSE_HEADERS;
  readonly id = `resp_${rand6()}`;
  private readonly itemId = `msg_${rand6()}`;
  private seq = 0;
  private outputIndex = 0;
  private reasoningId = '';
  private reasoningStarted = false;
  private thinkingText = '';
  private contentStarted = false;
  private text = '';
  private toolCallsSent = false;
  private readonly completed: unknown[] = [];
  private readonly createdAt = Math.floor(Date.now() / 1000);
  constructor(
    private readonly plan: Plan,
    private readonly label: string,
    private readonly echo: ResponsesEcho,
  ) {}

  private event(type: string, data: Record<string, unknown>): string {
    data.type = type;
    data.sequence_number = this.seq++;
    return sse(type, data);
  }

  private reasoningEcho(): unknown {
    const r = this.echo.reasoning;
    if (!r || (!r.effort && !r.summary)) return null;
    return { effort: r.effort || null, summary: r.summary || null };
  }

  private responseObject(status: string, output: unknown[], usageObj: unknown): Record<string, unknown> {
    return {
      id: this.id,
      object: 'response',
      created_at: this.createdAt,
      completed_at: null,
      status,
      incomplete_details: null,
      model: this.label,
      previous_response_id: null,
      instructions: this.echo.instructions || null,
      output,
      error: null,
      tools: this.echo.tools.map((t) => ({
        type: t.type,
        name: t.name,
        description: t.description ?? null,
        strict: t.strict ?? null,
        parameters: t.parameters ?? null,
      })),
      tool_choice: 'auto',
      truncation: this.echo.truncation ?? 'disabled',
      parallel_tool_calls: true,
      text: { format: this.echo.textFormat ?? { type: 'text' } },
      top_p: this.echo.topP ?? 1,
      presence_penalty: 0,
      frequency_penalty: 0,
      top_logprobs: 0,
      temperature: this.echo.temperature ?? 1,
      reasoning: this.reasoningEcho(),
      usage: usageObj,
      max_output_tokens: this.echo.maxOutputTokens ?? null,
      max_tool_calls: null,
      store: false,
      background: this.echo.background,
      service_tier: 'default',
      metadata: {},
      safety_identifier: null,
      prompt_cache_key: null,
    };
  }

  private usage(f: FinalInfo): unknown {
    return {
      input_tokens: f.promptTokens,
      output_tokens: f.evalCount,
      total_tokens: f.promptTokens + f.evalCount,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens_details: { reasoning_tokens: 0 },
    };
  }

  open(): string {
    return (
      this.event('response.created', { response: this.responseObject('in_progress', [], null) }) +
      this.event('response.in_progress', { response: this.responseObject('in_progress', [], null) })
    );
  }

  thinking(i: number): string {
    let out = '';
    if (!this.reasoningStarted) {
      this.reasoningStarted = true;
      this.reasoningId = `rs_${rand6()}`;
      out += this.event('response.output_item.added', {
        output_index: this.outputIndex,
        item: { id: this.reasoningId, type: 'reasoning', summary: [] },
      });
    }
    const delta = this.plan.thinking[i];
    this.thinkingText += delta;
    return (
      out +
      this.event('response.reasoning_summary_text.delta', {
        item_id: this.reasoningId,
        output_index: this.outputIndex,
        summary_index: 0,
        delta,
      })
    );
  }

  private finishReasoning(): string {
    if (!this.reasoningStarted) return '';
    const item = {
      id: this.reasoningId,
      type: 'reasoning',
      summary: [{ type: 'summary_text', text: this.thinkingText }],
      encrypted_content: this.thinkingText,
    };
    this.completed.push(item);
    this.reasoningStarted = false;
    const index = this.outputIndex++;
    return (
      this.event('response.reasoning_summary_text.done', {
        item_id: item.id,
        output_index: index,
        summary_index: 0,
        text: this.thinkingText,
      }) + this.event('response.output_item.done', { output_index: index, item })
    );
  }

  content(j: number): string {
    let out = this.finishReasoning();
    if (!this.contentStarted) {
      this.contentStarted = true;
      out += this.event('response.output_item.added', {
        output_index: this.outputIndex,
        item: { id: this.itemId, type: 'message', status: 'in_progress', role: 'assistant', content: [] },
      });
      out += this.event('response.content_part.added', {
        item_id: this.itemId,
        output_index: this.outputIndex,
        content_index: 0,
        part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
      });
    }
    const delta = this.plan.content[j];
    this.text += delta;
    return (
      out +
      this.event('response.output_text.delta', {
        item_id: this.itemId,
        output_index: this.outputIndex,
        content_index: 0,
        delta,
        logprobs: [],
      })
    );
  }

  toolCalls(): string {
    let out = this.finishReasoning();
    this.plan.toolCalls.forEach((c, i) => {
      const outputIndex = this.outputIndex + i;
      const id = `fc_${rand6()}_${i}`;
      const item = { id, type: 'function_call', status: 'completed', call_id: c.id, name: c.name, arguments: c.json };
      this.completed.push(item);
      out += this.event('response.output_item.added', {
        output_index: outputIndex,
        item: { ...item, status: 'in_progress', arguments: '' },
      });
      out += this.event('response.function_call_arguments.delta', {
        item_id: id,
        output_index: outputIndex,
        delta: c.json,
      });
      out += this.event('response.function_call_arguments.done', {
        item_id: id,
        output_index: outputIndex,
        arguments: c.json,
      });
      out += this.event('response.output_item.done', { output_index: outputIndex, item });
    });
    this.outputIndex += this.plan.toolCalls.length;
    this.toolCallsSent = true;
    return out;
  }

  private messageItem(id: string, text: string): Record<string, unknown> {
    return {
      id,
      type: 'message',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
    };
  }

  close(f: FinalInfo): string {
    let out = this.finishReasoning();
    const output = [...this.completed];
    if (!this.toolCallsSent && this.contentStarted) {
      const part = { type: 'output_text', text: this.text, annotations: [], logprobs: [] };
      out += this.event('response.output_text.done', {
        item_id: this.itemId,
        output_index: this.outputIndex,
        content_index: 0,
        text: this.text,
        logprobs: [],
      });
      out += this.event('response.content_part.done', {
        item_id: this.itemId,
        output_index: this.outputIndex,
        content_index: 0,
        part,
      });
      out += this.event('response.output_item.done', {
        output_index: this.outputIndex,
        item: this.messageItem(this.itemId, this.text),
      });
    }
    if (this.contentStarted) output.push(this.messageItem(this.itemId, this.text));
    const response = this.responseObject('completed', output, this.usage(f));
    response.completed_at = Math.floor(Date.now() / 1000);
    return out + this.event('response.completed', { response });
  }

  whole(f: FinalInfo): unknown {
    const output: unknown[] = [];
    if (this.plan.thinking.length) {
      const t = this.plan.thinking.join('');
      output.push({
        id: `rs_${this.id}`,
        type: 'reasoning',
        summary: [{ type: 'summary_text', text: t }],
        encrypted_content: t,
      });
    }
    if (this.plan.toolCalls.length) {
      this.plan.toolCalls.forEach((c, i) =>
        output.push({
          id: `fc_${this.id}_${i}`,
          type: 'function_call',
          status: 'completed',
          call_id: c.id,
          name: c.name,
          arguments: c.json,
        }),
      );
    } else output.push(this.messageItem(this.itemId, this.plan.content.join('')));
    const response = this.responseObject('completed', output, this.usage(f));
    response.completed_at = Math.floor(Date.now() / 1000);
    return response;
  }
}
