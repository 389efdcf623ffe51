/**
 * What a simulated model answers, decided before the first token: thinking tokens, answer tokens
 * or tool calls, and why it stops. Every surface (/api/chat, /api/generate, /v1/chat/completions,
 * /v1/messages, /v1/responses) turns its request into a `ChatInput` the way Ollama's middleware
 * turns it into an api.ChatRequest, so one conversation gives the same tokens on every surface.
 *
 * Determinism: the text depends only on the conversation (without a trailing assistant message)
 * and the seed (`options.seed`, else the instance's `seed`). A trailing assistant message with
 * content P on a model with prefill is continued in place: the tokens after P are exactly the
 * tokens the request without P produces after its own copy of P, so P + continuation equals the
 * uninterrupted answer whenever P is a prefix of it (at a chunk boundary or inside a chunk).
 */
import { randomBytes } from 'crypto';
import { valueForSchema, Rng } from './schema';
import { countTokens, hashString, jsonEscape, splitJsonTokens, splitTextTokens, WordGenerator } from './text';

export type ThinkValue = boolean | 'low' | 'medium' | 'high' | 'max';

export interface SimToolCall {
  id?: string;
  name: string;
  arguments: unknown;
}

/** One chat message after the surface's conversion (Ollama's api.Message). */
export interface SimMessage {
  role: string;
  content: string;
  thinking?: string;
  toolCalls?: SimToolCall[];
}

export interface SimTool {
  name: string;
  description?: string;
  parameters?: unknown;
}

export interface ChatInput {
  messages: SimMessage[];
  tools: SimTool[];
  /** undefined = the model's default (thinking models think). */
  think?: ThinkValue;
  /** `"json"` or a JSON Schema object. */
  format?: 'json' | Record<string, unknown>;
  /** num_predict / OpenAI max_tokens: the answer has exactly this many tokens (a sim convention, done_reason "length"). */
  numPredict?: number;
  /** Anthropic max_tokens / Responses max_output_tokens: an upper bound on the natural length. */
  cap?: number;
  seed?: number;
  logprobs: boolean;
  topLogprobs: number;
  /** /api/generate: the prompt itself (no messages, no continuation). */
  rawPrompt?: string;
}

export interface PlanModel {
  thinking: boolean;
  prefill: boolean;
}

export interface PlanConfig {
  defaultOutputTokens: number;
  maxOutputTokens: number;
  thinkingTokens: number;
  seed: number;
}

export interface PlannedToolCall {
  id: string;
  index: number;
  name: string;
  arguments: Record<string, unknown>;
  /** arguments as JSON text (what OpenAI and Anthropic carry). */
  json: string;
}

export interface Plan {
  thinking: string[];
  content: string[];
  /** The same tokens, escaped for a JSON string literal. */
  thinkingEsc: string[];
  contentEsc: string[];
  toolCalls: PlannedToolCall[];
  /** Tokens the tool calls cost (counted in eval_count). */
  toolTokens: number;
  doneReason: 'stop' | 'length';
  promptTokens: number;
  /** Seed of the text (logprobs and generate's `context` derive from it). */
  seed: number;
  logprobs: boolean;
  topLogprobs: number;
  /** The request continued a trailing assistant message. */
  continued: boolean;
}

const THINK_SCALE: Record<string, number> = { low: 0.5, medium: 1, high: 2, max: 3 };

/** The conversation as one string (what the seed and the prompt token count come from). */
export function messagesText(messages: SimMessage[]): string {
  let s = '';
  for (const m of messages) {
    s += `${m.role}: ${m.content}`;
    if (m.toolCalls?.length) s += ` ${JSON.stringify(m.toolCalls.map((c) => [c.name, c.arguments]))}`;
    s += '\n';
  }
  return s;
}

export function textSeed(prompt: string, seed: number): number {
  return hashString(prompt, hashString(String(seed)));
}

/** Ollama's tool-call ids: `call_` and 8 random characters. */
export function toolCallId(): string {
  const abc = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const b = randomBytes(8);
  let s = 'call_';
  for (let i = 0; i < 8; i++) s += abc[b[i] % abc.length];
  return s;
}

/** The answer's tokens, produced on demand: `natural` is where the model would stop by itself. */
class TokenSource {
  private readonly cache: string[] = [];
  private readonly gen: WordGenerator | undefined;
  constructor(
    private readonly fixed: string[],
    readonly natural: number,
    wordSeed?: number,
    wordStart = 0,
  ) {
    if (wordSeed !== undefined) this.gen = new WordGenerator(wordSeed, wordStart);
  }
  /** Token i, or undefined past the end (only JSON answers end). */
  at(i: number): string | undefined {
    if (i < this.fixed.length) return this.fixed[i];
    if (!this.gen) return undefined;
    while (this.cache.length <= i - this.fixed.length) this.cache.push(this.gen.next());
    return this.cache[i - this.fixed.length];
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Tools the last user message names (in the order the tools were declared). */
function mentionedTools(tools: SimTool[], text: string): SimTool[] {
  return tools.filter(
    (t) => t.name && new RegExp(`(^|[^A-Za-z0-9_])${escapeRe(t.name)}([^A-Za-z0-9_]|$)`, 'i').test(text),
  );
}

function contentSource(input: ChatInput, base: SimMessage[], seed: number, cfg: PlanConfig): TokenSource {
  const L = cfg.defaultOutputTokens;
  if (input.format !== undefined) {
    const rng = new Rng(seed ^ 0x2545f491);
    const value =
      input.format === 'json'
        ? {
            response: valueForSchema({ type: 'string' }, rng),
            confidence: valueForSchema({ type: 'number', minimum: 0, maximum: 1 }, rng),
          }
        : valueForSchema(input.format, rng);
    const json = JSON.stringify(value);
    let toks = splitJsonTokens(json);
    if (toks.join('') !== json) toks = [json];
    return new TokenSource(toks, toks.length);
  }
  // After tool results the answer starts by quoting them, so a test can see they reached the model.
  const results: string[] = [];
  for (let i = base.length - 1; i >= 0 && base[i].role === 'tool'; i--) results.unshift(base[i].content);
  if (results.length > 0) {
    const echo = splitTextTokens(results.join(' ').trim());
    return new TokenSource(echo, Math.max(L, echo.length + 4), seed, echo.length > 0 ? 1 : 0);
  }
  return new TokenSource([], L, seed);
}

/** Decides the answer. `input.messages` is the whole conversation as the client sent it. */
export function planAnswer(input: ChatInput, model: PlanModel, cfg: PlanConfig): Plan {
  const seedBase = input.seed ?? cfg.seed;
  const msgs = input.messages;
  const last = msgs[msgs.length - 1];
  const trailingAssistant =
    input.rawPrompt === undefined && last !== undefined && last.role === 'assistant' && !last.toolCalls?.length;
  const prefix = trailingAssistant && model.prefill ? last.content : '';
  // An empty trailing assistant message opens the assistant turn without changing the answer.
  const base = trailingAssistant && (model.prefill || last.content === '') ? msgs.slice(0, -1) : msgs;
  const promptText = input.rawPrompt ?? messagesText(base);
  const seed = textSeed(promptText, seedBase);
  const promptTokens = Math.max(1, countTokens(input.rawPrompt ?? messagesText(msgs)));
  const exact =
    input.numPredict !== undefined
      ? Math.max(0, Math.min(Math.floor(input.numPredict), cfg.maxOutputTokens))
      : undefined;
  const cap = input.cap !== undefined ? Math.max(0, Math.min(Math.floor(input.cap), cfg.maxOutputTokens)) : undefined;
  let budget = exact ?? cap ?? Number.POSITIVE_INFINITY;

  const plan: Plan = {
    thinking: [],
    content: [],
    thinkingEsc: [],
    contentEsc: [],
    toolCalls: [],
    toolTokens: 0,
    doneReason: 'stop',
    promptTokens,
    seed,
    logprobs: input.logprobs,
    topLogprobs: input.topLogprobs,
    continued: prefix !== '',
  };

  // A thinking model thinks unless told not to (Ollama sets think=true when the request leaves it out).
  const thinkOn = model.thinking && input.think !== false;
  // Ollama's parsers skip the thinking phase when the assistant turn is prefilled with content.
  if (thinkOn && !plan.continued) {
    const level = typeof input.think === 'string' ? input.think : 'medium';
    const T = Math.round(cfg.thinkingTokens * (THINK_SCALE[level] ?? 1));
    const g = new WordGenerator(seed ^ 0x5bd1e995);
    const n = Math.min(T, budget);
    for (let i = 0; i < n; i++) plan.thinking.push(g.next());
    budget -= n;
    if (n < T) {
      plan.doneReason = 'length';
      return finish(plan);
    }
  }

  const lastBase = base[base.length - 1];
  const called =
    input.tools.length > 0 && lastBase?.role === 'user' ? mentionedTools(input.tools, lastBase.content) : [];
  if (called.length > 0 && !plan.continued) {
    if (budget < 1) {
      plan.doneReason = 'length';
      return finish(plan);
    }
    const rng = new Rng(seed ^ 0x68e31da4);
    plan.toolCalls = called.map((t, index) => {
      const v = valueForSchema(
        t.parameters && typeof t.parameters === 'object' ? t.parameters : { type: 'object', properties: {} },
        rng,
      );
      const args = v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
      return { id: toolCallId(), index, name: t.name, arguments: args, json: JSON.stringify(args) };
    });
    plan.toolTokens = countTokens(
      JSON.stringify(plan.toolCalls.map((c) => ({ name: c.name, arguments: c.arguments }))),
    );
    return finish(plan);
  }

  let src: TokenSource;
  let start = 0;
  if (plan.continued) {
    const found = called.length > 0 ? undefined : resume(contentSource(input, base, seed, cfg), prefix);
    if (found) {
      src = found.src;
      start = found.start;
    } else {
      // Not a prefix of what the model would say: it carries on in its own words.
      const fresh = textSeed(messagesText(msgs), seedBase);
      src = new TokenSource([], Math.ceil(cfg.defaultOutputTokens / 2), fresh, 1);
    }
  } else src = contentSource(input, base, seed, cfg);

  const remaining = Math.max(0, src.natural - start);
  let n: number;
  if (exact !== undefined && input.format === undefined) {
    n = budget;
    plan.doneReason = 'length';
  } else {
    n = Math.min(remaining, budget);
    plan.doneReason = budget < remaining ? 'length' : 'stop';
  }
  for (let i = 0; i < n; i++) {
    const t = src.at(start + i);
    if (t === undefined) break;
    plan.content.push(t);
  }
  return finish(plan);
}

/** Where the answer goes on after `prefix`, if the answer starts with it. */
function resume(src: TokenSource, prefix: string): { src: TokenSource; start: number } | undefined {
  let acc = '';
  for (let i = 0; i <= prefix.length; i++) {
    const t = src.at(i);
    if (t === undefined) return undefined;
    const next = acc + t;
    if (next.length <= prefix.length) {
      if (!prefix.startsWith(next)) return undefined;
      acc = next;
      if (acc.length === prefix.length) return { src, start: i + 1 };
      continue;
    }
    // The prefix ends inside token i: the rest of that token comes first.
    if (!next.startsWith(prefix)) return undefined;
    const rest = next.slice(prefix.length);
    const tail: TokenSource = Object.create(src) as TokenSource;
    tail.at = (j: number) => (j === i ? rest : src.at(j));
    return { src: tail, start: i };
  }
  return undefined;
}

function finish(plan: Plan): Plan {
  plan.thinkingEsc = plan.thinking.map(jsonEscape);
  plan.contentEsc = plan.content.map(jsonEscape);
  return plan;
}

/** Parses Ollama's `think` field: bool or "low" | "medium" | "high" | "max" (its own error text otherwise). */
export function parseThink(v: unknown): { value?: ThinkValue; error?: string } {
  if (v === undefined || v === null) return {};
  if (typeof v === 'boolean') return { value: v };
  if (typeof v === 'string') {
    if (v === 'low' || v === 'medium' || v === 'high' || v === 'max') return { value: v };
    return { error: `invalid think value: "${v}" (must be "high", "medium", "low", "max", true, or false)` };
  }
  return { error: 'think must be a boolean or string ("high", "medium", "low", "max", true, or false)' };
}

/** Ollama's `format`: "json", a JSON Schema object, or nothing (null / ""). */
export function parseFormat(v: unknown): { value?: 'json' | Record<string, unknown>; error?: string } {
  if (v === undefined || v === null || v === '') return {};
  if (v === 'json') return { value: 'json' };
  if (typeof v === 'object' && !Array.isArray(v)) return { value: v as Record<string, unknown> };
  // Go's %q of the raw JSON bytes.
  return {
    error: `invalid format: ${JSON.stringify(JSON.stringify(v))}; expected "json" or a valid JSON Schema object`,
  };
}
