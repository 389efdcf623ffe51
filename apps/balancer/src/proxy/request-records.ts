import { Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { numberField } from '../usage/number-field';
import { readTokenUsage, tailOf, usageSurface } from '../usage/token-usage';

export { numberField };

/** What one request did, for its log line and the metrics. Holds no prompt and no secret. */
export interface RequestRecord {
  id: string;
  method: string;
  path: string;
  model: string | null;
  backend: string | null;
  reason: string | null;
  status: number | undefined;
  bytes: number;
  ttfbMs: number | null;
  queuedMs: number;
  retries: number;
  attempts: number;
  startedAt: number;
  error: string | null;
  apiKey: string | null;
  /** Its class in the placement queue (model requests only). */
  priorityClass: string | null;
  /** Times its stream was resumed on another backend after breaking (STREAM_RESUME). */
  resumes?: number;
  /** Token usage read from the answer's end, on every surface (absent when it carried none). */
  promptTokens?: number;
  outputTokens?: number;
  /**
   * From the answer's final event: Ollama's final object (counts and durations); OpenAI's usage
   * (chat: prompt/completion_tokens), Anthropic's message_delta usage and Responses'
   * response.completed usage (input/output_tokens), where the answer carried them. On those three
   * surfaces evalDurationNs is the time from the first byte to the last of a streamed answer.
   */
  evalCount?: number;
  evalDurationNs?: number;
  promptEvalCount?: number;
  promptEvalDurationNs?: number;
  loadDurationNs?: number;
  /** Ollama's total_duration: from the request's arrival there to its end (queueing for a slot included). */
  totalDurationNs?: number;
}

export interface RequestListener {
  onRequestEnd(record: RequestRecord, durationMs: number): void;
}

/**
 * One record per request, filled as it passes and handed to the listeners (the request log and the
 * metrics, in observability/) when its response ends. The final chunk of a stream is parsed for
 * Ollama's counters; nothing else is.
 */
@Injectable()
export class RequestRecords {
  readonly listeners: RequestListener[] = [];
  /** Requests on Ollama's and OpenAI's paths begun and not yet closed (fan-outs included): what a drain waits for. */
  open = 0;

  begin(req: IncomingMessage, path: string, id: string, startedAt: number): RequestRecord {
    this.open++;
    return {
      id,
      method: req.method ?? 'GET',
      path,
      model: null,
      backend: null,
      reason: null,
      status: undefined,
      bytes: 0,
      ttfbMs: null,
      queuedMs: 0,
      retries: 0,
      attempts: 0,
      startedAt,
      error: null,
      apiKey: null,
      priorityClass: null,
    };
  }

  end(record: RequestRecord, res: ServerResponse): void {
    this.open--;
    const durationMs = Date.now() - record.startedAt;
    if (record.status === undefined) record.status = res.statusCode;
    if (!res.writableFinished && record.error === null) record.error = 'client closed the connection';
    for (const l of this.listeners) l.onRequestEnd(record, durationMs);
  }

  /**
   * Reads the answer's counters from its last chunks (kept by reference), once, when it ended:
   * Ollama's final object for its durations (finalChunk), and the token counts of every surface
   * through the one reader (tokenUsage: usage/token-usage.ts), which on OpenAI's, Anthropic's and
   * Responses' surfaces also feed the eval counters that metrics and learning read.
   */
  finalEvents(record: RequestRecord, chunks: Buffer[], streamed: boolean): void {
    if (chunks.length === 0) return;
    const ollama = record.path.startsWith('/api/');
    if (ollama) this.finalChunk(record, lastLine(chunks));
    this.tokenUsage(record, chunks);
    if (ollama || record.outputTokens === undefined) return;
    record.promptEvalCount = record.promptTokens;
    record.evalCount = record.outputTokens;
    if (streamed && record.ttfbMs !== null)
      record.evalDurationNs = Math.max(0, Date.now() - record.startedAt - record.ttfbMs) * 1e6;
  }

  /**
   * Reads Ollama's counters from the last line of a stream (or a non-streamed answer). The counters
   * are found by name from the end of the line rather than by parsing it: a non-streamed answer's
   * line holds the whole response text (and /api/generate's `context` array), which JSON.parse would
   * walk on every request. In JSON text a quote inside a string is always escaped, so `"eval_count":`
   * can only be a key; Ollama writes its metrics after the message, so the last match is the top-level one.
   */
  finalChunk(record: RequestRecord, tail: Buffer): void {
    let end = tail.length;
    while (end > 0 && (tail[end - 1] === 10 || tail[end - 1] === 13)) end--;
    const line = tail.subarray(tail.lastIndexOf(10, end - 1) + 1, end);
    if (line.lastIndexOf(DONE_TRUE) === -1) return;
    record.evalCount = numberField(line, EVAL_COUNT);
    record.evalDurationNs = numberField(line, EVAL_DURATION);
    record.promptEvalCount = numberField(line, PROMPT_EVAL_COUNT);
    record.promptEvalDurationNs = numberField(line, PROMPT_EVAL_DURATION);
    record.loadDurationNs = numberField(line, LOAD_DURATION);
    record.totalDurationNs = numberField(line, TOTAL_DURATION);
  }

  /** Token usage from the last chunks of an answer (any surface: Ollama, OpenAI, Anthropic, Responses). */
  tokenUsage(record: RequestRecord, recent: readonly Buffer[]): void {
    const counts = readTokenUsage(usageSurface(record.path), tailOf(recent));
    if (counts === null) return;
    record.promptTokens = counts.promptTokens;
    record.outputTokens = counts.outputTokens;
  }
}

const DONE_TRUE = Buffer.from('"done":true');
const EVAL_COUNT = Buffer.from('"eval_count":');
const EVAL_DURATION = Buffer.from('"eval_duration":');
const PROMPT_EVAL_COUNT = Buffer.from('"prompt_eval_count":');
const PROMPT_EVAL_DURATION = Buffer.from('"prompt_eval_duration":');
const LOAD_DURATION = Buffer.from('"load_duration":');
const TOTAL_DURATION = Buffer.from('"total_duration":');

/** The bytes holding the last line of a body, joined from the last chunks only when it spans them. */
export function lastLine(chunks: Buffer[]): Buffer {
  const last = chunks[chunks.length - 1];
  // A newline before the trailing one means the final line starts inside the last chunk.
  let end = last.length;
  while (end > 0 && (last[end - 1] === 10 || last[end - 1] === 13)) end--;
  if (end > 0 && last.lastIndexOf(10, end - 1) !== -1) return last;
  for (let i = chunks.length - 2; i >= 0; i--) {
    if (chunks[i].lastIndexOf(10) !== -1 || i === 0) return Buffer.concat(chunks.slice(i));
  }
  return last;
}
