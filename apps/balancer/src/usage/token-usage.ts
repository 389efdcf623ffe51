import { numberField } from './number-field';

/** Which wire format an answer is in, for where its token counts live. */
export type UsageSurface = 'ollama' | 'openai' | 'anthropic' | 'none';

export interface TokenCounts {
  promptTokens: number;
  outputTokens: number;
}

/** The surface of a model route, by path. */
export function usageSurface(path: string): UsageSurface {
  if (path.startsWith('/api/')) return path === '/api/embeddings' ? 'none' : 'ollama';
  // /v1/messages (Anthropic) and /v1/responses (OpenAI Responses) both count input/output tokens.
  if (path === '/v1/messages' || path === '/v1/responses') return 'anthropic';
  if (path.startsWith('/v1/')) return 'openai';
  return 'none';
}

const PROMPT_EVAL_COUNT = Buffer.from('"prompt_eval_count":');
const EVAL_COUNT = Buffer.from('"eval_count":');
const PROMPT_TOKENS = Buffer.from('"prompt_tokens":');
const COMPLETION_TOKENS = Buffer.from('"completion_tokens":');
const INPUT_TOKENS = Buffer.from('"input_tokens":');
const OUTPUT_TOKENS = Buffer.from('"output_tokens":');

/**
 * Token counts from the end of an answer (the last few KB: the final NDJSON object, the last SSE
 * events, or the tail of a JSON body), found by name from the end as the request observer reads
 * Ollama's counters: in JSON text a quote inside a string is escaped, so `"eval_count":` can only be
 * a key, and every surface writes its usage after the content.
 *
 * - Ollama: the final object's prompt_eval_count / eval_count (/api/embed: prompt_eval_count only).
 * - OpenAI: `usage.prompt_tokens` / `usage.completion_tokens` (a non-streamed answer, or a stream
 *   asked with stream_options.include_usage; embeddings have no completion tokens).
 * - Anthropic /v1/messages: `usage.input_tokens` / `usage.output_tokens` (message_delta's usage is
 *   cumulative and carries both in Ollama's implementation); OpenAI /v1/responses: response.completed's
 *   usage, same names.
 * Null when the answer carried no counts.
 */
export function readTokenUsage(surface: UsageSurface, tail: Buffer): TokenCounts | null {
  let prompt: number | undefined;
  let output: number | undefined;
  switch (surface) {
    case 'ollama':
      prompt = numberField(tail, PROMPT_EVAL_COUNT);
      output = numberField(tail, EVAL_COUNT);
      break;
    case 'openai':
      prompt = numberField(tail, PROMPT_TOKENS);
      output = numberField(tail, COMPLETION_TOKENS);
      break;
    case 'anthropic':
      prompt = numberField(tail, INPUT_TOKENS);
      output = numberField(tail, OUTPUT_TOKENS);
      break;
    case 'none':
      return null;
  }
  if (prompt === undefined && output === undefined) return null;
  return { promptTokens: prompt ?? 0, outputTokens: output ?? 0 };
}

/** At most this many bytes from the end of an answer are searched. */
export const USAGE_TAIL_BYTES = 4096;

/** The last `USAGE_TAIL_BYTES` of the recent chunks (by reference when the last chunk has them). */
export function tailOf(chunks: readonly Buffer[]): Buffer {
  if (chunks.length === 0) return Buffer.alloc(0);
  const last = chunks[chunks.length - 1];
  if (last.length >= USAGE_TAIL_BYTES || chunks.length === 1)
    return last.length > USAGE_TAIL_BYTES ? last.subarray(last.length - USAGE_TAIL_BYTES) : last;
  let size = 0;
  let i = chunks.length;
  while (i > 0 && size < USAGE_TAIL_BYTES) size += chunks[--i].length;
  const joined = Buffer.concat(chunks.slice(i), size);
  return joined.length > USAGE_TAIL_BYTES ? joined.subarray(joined.length - USAGE_TAIL_BYTES) : joined;
}
