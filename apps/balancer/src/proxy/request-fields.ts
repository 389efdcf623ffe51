import type { RunnerOptions } from '../fleet/backend';
import { randomUUID } from 'crypto';
import type { IncomingMessage } from 'http';
import { keepAliveMs as parseKeepAliveMs } from '@app/ollama-names';

/** The most output tokens the client asked for (Ollama's num_predict, OpenAI's max_tokens), if any. */
export function requestedTokens(body: any): number | null {
  const v = body?.options?.num_predict ?? body?.max_completion_tokens ?? body?.max_tokens ?? body?.max_output_tokens;
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.min(v, 1_000_000) : null;
}

/**
 * Whether the request continues a conversation: an earlier assistant turn in its messages (/api/chat,
 * /v1/chat/completions, /v1/messages; /v1/responses' `input` items), or /api/generate with the
 * `context` of an earlier answer. Its prompt is then likely in the backend's prompt cache, and since
 * Ollama 0.30 prompt_eval_count counts cached tokens: its prompt speed says little of prefill.
 * Only values of the expected type are read (a hostile body never throws here).
 */
export function continuesConversation(path: string, body: any): boolean {
  if (path === '/api/generate') return Array.isArray(body?.context) && body.context.length > 0;
  const turns =
    path === '/v1/responses'
      ? body?.input
      : path === '/api/chat' || path === '/v1/chat/completions' || path === '/v1/messages'
        ? body?.messages
        : undefined;
  if (!Array.isArray(turns)) return false;
  // A trailing assistant message is a prefill of this answer, not an earlier turn.
  for (let i = 0; i < turns.length - 1; i++) {
    const m = turns[i];
    if (m !== null && typeof m === 'object' && m.role === 'assistant') return true;
  }
  return false;
}

/** The server's defaults: one shared, frozen value for every request that names no runner option. */
const DEFAULT_RUNNER: RunnerOptions = Object.freeze({});

/**
 * The runner options Ollama compares with the loaded runner's (a difference reloads the model), from
 * the request's `options` and top-level `shift` (empty: the server's defaults).
 */
export function runnerOptionsOf(body: any): RunnerOptions {
  const o = body?.options;
  const int = (v: unknown): number | undefined =>
    typeof v === 'number' && Number.isFinite(v) ? Math.trunc(v) : undefined;
  const shiftOff = body?.shift === false;
  if ((o === null || typeof o !== 'object') && !shiftOff) return DEFAULT_RUNNER; // most requests
  const out: RunnerOptions = {};
  if (o !== null && typeof o === 'object') {
    const numCtx = int(o.num_ctx);
    const numBatch = int(o.num_batch);
    const numGpu = int(o.num_gpu);
    const numThread = int(o.num_thread);
    if (numCtx !== undefined) out.numCtx = numCtx;
    if (numBatch !== undefined) out.numBatch = numBatch;
    if (numGpu !== undefined && numGpu >= 0) out.numGpu = numGpu;
    if (typeof o.use_mmap === 'boolean') out.useMmap = o.use_mmap;
    if (numThread !== undefined) out.numThread = numThread;
  }
  if (shiftOff) out.noShift = true;
  return out;
}

/** Whether the answer streams: Ollama's routes stream unless told not to, OpenAI's only when asked. */
export function isStreamed(path: string, body: Record<string, any>): boolean {
  return path.startsWith('/v1/') ? body.stream === true : body.stream !== false;
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
  if (path === '/api/generate')
    return (body.prompt === undefined || body.prompt === '') && body.suffix === undefined && body.images === undefined;
  if (path === '/api/chat') return !Array.isArray(body.messages) || body.messages.length === 0;
  return false;
}

/** The client's X-Request-Id when it is a sane one, else a fresh id. */
export function pickRequestId(given: string | string[] | undefined): string {
  const v = Array.isArray(given) ? given[0] : given;
  if (v && v.length <= 128 && /^[\w.:@/+=-]+$/.test(v)) return v;
  return randomUUID();
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
    // Only strings are read: a value with its own toString (or none) must never be converted.
    const sysContent = msgs.find((m: any) => m?.role === 'system')?.content;
    const sys = typeof sysContent === 'string' ? sysContent : '';
    const first = msgs.find((m: any) => m?.role === 'user')?.content;
    const model = typeof body.model === 'string' ? body.model : '';
    if (typeof first === 'string' && first.length > 0)
      return `c:${model}:${fnv1a(sys.slice(0, 2048) + '\u0000' + first.slice(0, 2048))}`;
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
