import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { JsonLog } from '../metrics/json-log';

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
  /** From the final NDJSON chunk, when the stream carried one. */
  evalCount?: number;
  evalDurationNs?: number;
  promptEvalCount?: number;
  promptEvalDurationNs?: number;
  loadDurationNs?: number;
}

export interface RequestListener {
  onRequestEnd(record: RequestRecord, durationMs: number): void;
}

/**
 * Observes requests as they pass: one structured log line each, and listeners (metrics) fed from
 * the same record. The final chunk of a stream is parsed for Ollama's counters; nothing else is.
 */
@Injectable()
export class RequestObserver {
  readonly listeners: RequestListener[] = [];
  /** Plain JSON lines on stdout (LOG_LEVEL; a 5xx is a warn line, the rest info); shared with the routing-event log. */
  readonly log: JsonLog;
  private readonly logRequests: boolean;
  /** Configured API key names: only these may appear in a log line, never a key itself. */
  private readonly keyNames: Set<string>;

  constructor(@Inject(BALANCER_CONFIG) config: BalancerConfig) {
    this.log = new JsonLog(config.logLevel);
    this.logRequests = config.logRequests;
    this.keyNames = new Set(config.apiKeys.map((k) => k.name));
  }

  begin(req: IncomingMessage, path: string, id: string, startedAt: number): RequestRecord {
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
    };
  }

  end(record: RequestRecord, res: ServerResponse): void {
    const durationMs = Date.now() - record.startedAt;
    if (record.status === undefined) record.status = res.statusCode;
    if (!res.writableFinished && record.error === null) record.error = 'client closed the connection';
    for (const l of this.listeners) l.onRequestEnd(record, durationMs);
    if (!this.logRequests) return;
    const status = record.status ?? 0;
    this.log.line(status >= 500 ? 'warn' : 'log', 'request', {
      id: record.id,
      method: record.method,
      path: record.path,
      model: record.model,
      backend: record.backend,
      status,
      bytes: record.bytes,
      ttfbMs: record.ttfbMs,
      durationMs,
      queuedMs: record.queuedMs,
      retries: record.retries,
      attempts: record.attempts,
      reason: record.reason,
      key: record.apiKey !== null && this.keyNames.has(record.apiKey) ? record.apiKey : null,
      evalCount: record.evalCount,
      promptEvalCount: record.promptEvalCount,
      error: record.error,
    });
  }

  /** Reads Ollama's counters from the last line of a stream (or a non-streamed answer). */
  finalChunk(record: RequestRecord, tail: Buffer): void {
    if (tail.indexOf('"done":true') === -1) return;
    let end = tail.length;
    while (end > 0 && (tail[end - 1] === 10 || tail[end - 1] === 13)) end--;
    const start = tail.lastIndexOf(10, end - 1) + 1;
    let obj: any;
    try {
      obj = JSON.parse(tail.subarray(start, end).toString('utf8'));
    } catch {
      return;
    }
    if (typeof obj !== 'object' || obj === null) return;
    record.evalCount = num(obj.eval_count);
    record.evalDurationNs = num(obj.eval_duration);
    record.promptEvalCount = num(obj.prompt_eval_count);
    record.promptEvalDurationNs = num(obj.prompt_eval_duration);
    record.loadDurationNs = num(obj.load_duration);
  }
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
