/**
 * Each surface's request turned into one `ChatInput`, the way Ollama's middleware turns it into an
 * api.ChatRequest / api.GenerateRequest (openai/openai.go FromChatRequest, anthropic/anthropic.go
 * FromMessagesRequest, openai/responses.go FromResponsesRequest), with their error texts.
 */
import type { CompletionKind } from './jobs';
import {
  parseFormat,
  parseThink,
  type ChatInput,
  type SimMessage,
  type SimTool,
  type SimToolCall,
  type ThinkValue,
} from './plan';
import type { ResponsesEcho } from './surfaces';

type Body = Record<string, any>;

export interface ParsedCompletion {
  label: string;
  stream: boolean;
  input: ChatInput;
  keepAlive: unknown;
  options: unknown;
  shift: unknown;
  includeUsage: boolean;
  /** /v1/messages: a `thinking` request on a model without the capability is dropped, not refused (Ollama's relax_thinking). */
  relaxThinking: boolean;
  /** Empty prompt / no messages on the native API: load (or unload) the model only. */
  loadOnly: boolean;
  /** Ollama's len/4 estimate of an Anthropic request (message_start usage). */
  estimatedInputTokens: number;
  echo?: ResponsesEcho;
  formatError?: string;
}

export interface ParseFailure {
  error: string;
  status: number;
}

const fail = (error: string, status = 400): ParseFailure => ({ error, status });

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** Text of a content value: a string, or the text parts of an array. */
function contentText(c: unknown): string {
  if (typeof c === 'string') return c;
  if (!Array.isArray(c)) return '';
  return c.map((p: any) => (typeof p === 'string' ? p : typeof p?.text === 'string' ? p.text : '')).join('');
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function topLogprobs(v: unknown): number | ParseFailure {
  const n = v === undefined || v === null ? 0 : num(v);
  if (n === undefined || n < 0 || n > 20) return fail('top_logprobs must be between 0 and 20');
  return Math.floor(n);
}

/** Ollama/OpenAI tool declarations: `[{type:"function", function:{name, description, parameters}}]`. */
function functionTools(v: unknown): SimTool[] {
  if (!Array.isArray(v)) return [];
  return v
    .map((t: any) => t?.function ?? t)
    .filter((f: any) => f && typeof f.name === 'string')
    .map((f: any) => ({ name: f.name, description: str(f.description), parameters: f.parameters }));
}

/** num_predict: -1 (infinite) and -2 (fill the context) mean no fixed length here. */
function numPredict(v: unknown): number | undefined {
  const n = num(v);
  return n !== undefined && n >= 0 ? n : undefined;
}

function base(label: string, stream: boolean, input: ChatInput): ParsedCompletion {
  return {
    label,
    stream,
    input,
    keepAlive: undefined,
    options: undefined,
    shift: undefined,
    includeUsage: false,
    relaxThinking: false,
    loadOnly: false,
    estimatedInputTokens: 0,
  };
}

function label(body: Body): string {
  const v = body.model ?? body.name;
  return typeof v === 'string' ? v.trim() : '';
}

// ------------------------------------------------------------------ native

function nativeMessages(v: unknown): SimMessage[] {
  if (!Array.isArray(v)) return [];
  return v
    .filter((m) => m && typeof m === 'object')
    .map((m: any) => {
      const out: SimMessage = { role: str(m.role).toLowerCase() || 'user', content: contentText(m.content) };
      if (typeof m.thinking === 'string' && m.thinking) out.thinking = m.thinking;
      if (Array.isArray(m.tool_calls) && m.tool_calls.length) {
        out.toolCalls = m.tool_calls.map((c: any) => ({
          id: str(c?.id) || undefined,
          name: str(c?.function?.name),
          arguments: c?.function?.arguments ?? {},
        }));
      }
      return out;
    });
}

function nativeCommon(body: Body, p: ParsedCompletion): ParseFailure | undefined {
  const think = parseThink(body.think);
  if (think.error) return fail(think.error);
  p.input.think = think.value;
  const format = parseFormat(body.format);
  p.formatError = format.error;
  p.input.format = format.value;
  const opts = (body.options && typeof body.options === 'object' ? body.options : {}) as Body;
  p.input.numPredict = numPredict(opts.num_predict);
  p.input.seed = num(opts.seed) !== undefined && opts.seed >= 0 ? opts.seed : undefined;
  p.input.logprobs = body.logprobs === true;
  const top = topLogprobs(body.top_logprobs);
  if (typeof top !== 'number') return top;
  p.input.topLogprobs = top;
  p.keepAlive = body.keep_alive;
  p.options = body.options;
  p.shift = body.shift;
  return undefined;
}

export function parseOllamaChat(body: Body): ParsedCompletion | ParseFailure {
  const messages = nativeMessages(body.messages);
  const p = base(label(body), body.stream !== false, {
    messages,
    tools: functionTools(body.tools),
    logprobs: false,
    topLogprobs: 0,
  });
  const err = nativeCommon(body, p);
  if (err) return err;
  p.loadOnly = !Array.isArray(body.messages) || body.messages.length === 0;
  return p;
}

export function parseGenerate(body: Body): ParsedCompletion | ParseFailure {
  let prompt = str(body.prompt);
  const system = str(body.system);
  const raw = body.raw === true;
  if (raw && (body.template || system || (Array.isArray(body.context) && body.context.length)))
    return fail('raw mode does not support template, system, or context');
  const loadOnly = prompt === '' && !body.images;
  if (system && prompt) prompt = `${system}\n${prompt}`;
  const p = base(label(body), body.stream !== false, {
    messages: [],
    tools: [],
    logprobs: false,
    topLogprobs: 0,
    rawPrompt: prompt,
  });
  const err = nativeCommon(body, p);
  if (err) return err;
  if (raw) p.input.think = false;
  p.loadOnly = loadOnly;
  return p;
}

// ------------------------------------------------------------------ OpenAI

/** openai.thinkFromReasoningEffort. */
function thinkFromEffort(effort: unknown): { value?: ThinkValue; error?: string } {
  switch (effort) {
    case undefined:
    case null:
    case '':
      return {};
    case 'none':
      return { value: false };
    case 'minimal':
      return { value: 'low' };
    case 'low':
    case 'medium':
    case 'high':
    case 'max':
      return { value: effort };
    case 'xhigh':
    case 'ultra':
      return { value: 'max' };
    default:
      return {
        error: `invalid reasoning value: ${JSON.stringify(effort)} (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")`,
      };
  }
}

function openAiMessages(v: unknown): SimMessage[] | ParseFailure {
  const out: SimMessage[] = [];
  for (const m of Array.isArray(v) ? v : []) {
    if (!m || typeof m !== 'object') continue;
    const role = str(m.role).toLowerCase();
    const msg: SimMessage = { role, content: contentText(m.content) };
    if (typeof m.reasoning === 'string' && m.reasoning) msg.thinking = m.reasoning;
    if (Array.isArray(m.tool_calls) && m.tool_calls.length) {
      const calls: SimToolCall[] = [];
      for (const c of m.tool_calls) {
        let args: unknown = {};
        try {
          args =
            typeof c?.function?.arguments === 'string' && c.function.arguments !== ''
              ? JSON.parse(c.function.arguments)
              : {};
        } catch {
          return fail('invalid tool call arguments');
        }
        calls.push({ id: str(c?.id) || undefined, name: str(c?.function?.name), arguments: args });
      }
      msg.toolCalls = calls;
    }
    out.push(msg);
  }
  return out;
}

export function parseOpenAiChat(body: Body): ParsedCompletion | ParseFailure {
  if (label(body) !== '' && (!Array.isArray(body.messages) || body.messages.length === 0))
    return fail("[] is too short - 'messages'");
  const messages = openAiMessages(body.messages);
  if (!Array.isArray(messages)) return messages;
  const think = thinkFromEffort(body.reasoning?.effort ?? body.reasoning_effort);
  if (think.error) return fail(think.error);
  const rf = body.response_format;
  let format: ChatInput['format'];
  const rfType = typeof rf?.type === 'string' ? rf.type.trim().toLowerCase() : '';
  if (rfType === 'json_object') format = 'json';
  else if (rfType === 'json_schema' && rf.json_schema?.schema && typeof rf.json_schema.schema === 'object')
    format = rf.json_schema.schema;
  const limit = num(body.max_completion_tokens ?? body.max_tokens);
  const top = topLogprobs(body.top_logprobs);
  if (typeof top !== 'number') return top;
  const p = base(label(body), body.stream === true, {
    messages,
    tools: functionTools(body.tools),
    think: think.value,
    format,
    numPredict: limit !== undefined && limit >= 0 ? limit : undefined,
    seed: num(body.seed),
    logprobs: body.logprobs === true,
    topLogprobs: top,
  });
  p.includeUsage = !!body.stream_options?.include_usage;
  return p;
}

export function parseOpenAiCompletion(body: Body): ParsedCompletion | ParseFailure {
  const pr = body.prompt;
  // Only strings are joined: join() on a client's object calls its own toString (a crash).
  const prompt =
    typeof pr === 'string'
      ? pr
      : Array.isArray(pr)
        ? pr.map((x: unknown) => (typeof x === 'string' ? x : '')).join('\n')
        : '';
  const limit = num(body.max_tokens);
  const p = base(label(body), body.stream === true, {
    messages: [],
    tools: [],
    numPredict: limit !== undefined && limit >= 0 ? limit : undefined,
    seed: num(body.seed),
    logprobs: false,
    topLogprobs: 0,
    rawPrompt: prompt,
  });
  p.includeUsage = !!body.stream_options?.include_usage;
  return p;
}

// ------------------------------------------------------------------ Anthropic

function blocks(content: unknown): Body[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  return Array.isArray(content) ? content.filter((b) => b && typeof b === 'object') : [];
}

/** anthropic.EstimateInputTokens: len/4 of system, roles, block texts, tool blocks and tool declarations. */
function estimateAnthropic(body: Body): number {
  let total = 0;
  const sys = body.system;
  if (typeof sys === 'string') total += sys.length;
  else if (Array.isArray(sys)) for (const b of sys) total += typeof b?.text === 'string' ? b.text.length : 0;
  const msgs = Array.isArray(body.messages) ? body.messages : [];
  for (const m of msgs) {
    total += str(m?.role).length;
    for (const b of blocks(m?.content)) {
      if (typeof b.text === 'string') total += b.text.length;
      if (typeof b.thinking === 'string') total += b.thinking.length;
      if (b.type === 'tool_use' || b.type === 'tool_result') total += JSON.stringify(b).length;
    }
  }
  for (const t of Array.isArray(body.tools) ? body.tools : [])
    total +=
      str(t?.name).length + str(t?.description).length + (t?.input_schema ? JSON.stringify(t.input_schema).length : 0);
  const tokens = Math.floor(total / 4);
  return tokens === 0 && (msgs.length > 0 || body.system !== undefined) ? 1 : tokens;
}

export function parseMessages(body: Body): ParsedCompletion | ParseFailure {
  const model = typeof body.model === 'string' ? body.model : '';
  if (model === '') return fail('model is required');
  const maxTokens = num(body.max_tokens);
  if (maxTokens === undefined || maxTokens <= 0) return fail('max_tokens is required and must be positive');
  if (!Array.isArray(body.messages) || body.messages.length === 0) return fail('messages is required');
  const messages: SimMessage[] = [];
  const sys = body.system;
  const sysText =
    typeof sys === 'string'
      ? sys
      : Array.isArray(sys)
        ? sys
            .filter((b: any) => b?.type === 'text')
            .map((b: any) => str(b.text))
            .join('')
        : '';
  if (sysText) messages.push({ role: 'system', content: sysText });
  for (const m of body.messages) {
    const role = str(m?.role).toLowerCase();
    let text = '';
    let thinking = '';
    const toolCalls: SimToolCall[] = [];
    const results: SimMessage[] = [];
    for (const b of blocks(m?.content)) {
      switch (b.type) {
        case 'text':
          text += str(b.text);
          break;
        case 'tool_use':
        case 'server_tool_use':
          if (b.type === 'tool_use' && !b.id) return fail("tool_use block missing required 'id' field");
          if (b.type === 'tool_use' && !b.name) return fail("tool_use block missing required 'name' field");
          toolCalls.push({ id: str(b.id), name: str(b.name), arguments: b.input ?? {} });
          break;
        case 'tool_result':
          results.push({ role: 'tool', content: contentText(b.content) });
          break;
        case 'thinking':
          thinking = str(b.thinking);
          break;
      }
    }
    if (role === 'user') messages.push(...results);
    if (text || toolCalls.length || thinking) {
      const msg: SimMessage = { role, content: text };
      if (thinking) msg.thinking = thinking;
      if (toolCalls.length) msg.toolCalls = toolCalls;
      messages.push(msg);
    }
    if (role !== 'user') messages.push(...results);
  }
  const tools: SimTool[] = (Array.isArray(body.tools) ? body.tools : [])
    .filter((t: any) => t && typeof t.name === 'string')
    .map((t: any) => ({ name: t.name, description: str(t.description), parameters: t.input_schema }));
  let think: ThinkValue | undefined;
  if (body.thinking?.type === 'enabled') think = true;
  else if (body.thinking?.type === 'disabled') think = false;
  else {
    let effort = str(body.output_config?.effort).trim().toLowerCase();
    if (effort === 'xhigh') effort = 'high';
    if (['high', 'medium', 'low', 'max'].includes(effort)) think = effort as ThinkValue;
  }
  const p = base(model, body.stream === true, {
    messages,
    tools,
    think,
    cap: maxTokens,
    logprobs: false,
    topLogprobs: 0,
  });
  p.relaxThinking = true;
  p.estimatedInputTokens = estimateAnthropic(body);
  return p;
}

// ------------------------------------------------------------------ Responses

function responsesContent(content: unknown, where: string): string | ParseFailure {
  if (typeof content === 'string') return content;
  if (content === undefined || content === null) return '';
  if (!Array.isArray(content)) return fail(`${where}: content must be a string or array`);
  let text = '';
  for (let j = 0; j < content.length; j++) {
    const c = content[j];
    switch (c?.type) {
      case 'input_text':
      case 'output_text':
        text += str(c.text);
        break;
      case 'input_image':
        break;
      case 'input_file':
        return fail('file inputs are not currently supported');
      default:
        return fail(`${where}: content[${j}]: unknown content type: ${str(c?.type)}`);
    }
  }
  return text;
}

export function parseResponses(body: Body): ParsedCompletion | ParseFailure {
  const messages: SimMessage[] = [];
  if (typeof body.instructions === 'string' && body.instructions)
    messages.push({ role: 'system', content: body.instructions });
  const input = body.input;
  if (typeof input === 'string') {
    if (input) messages.push({ role: 'user', content: input });
  } else if (Array.isArray(input)) {
    let pendingThinking = '';
    for (let i = 0; i < input.length; i++) {
      const item = input[i] ?? {};
      const type = str(item.type) || (item.role ? 'message' : '');
      const last = messages[messages.length - 1];
      switch (type) {
        case 'message': {
          const text = responsesContent(item.content, `input[${i}]`);
          if (typeof text !== 'string') return text;
          const msg: SimMessage = { role: str(item.role), content: text };
          if (msg.role === 'assistant' && pendingThinking) {
            msg.thinking = pendingThinking;
            pendingThinking = '';
          }
          messages.push(msg);
          break;
        }
        case 'function_call': {
          let args: unknown = {};
          try {
            if (typeof item.arguments === 'string' && item.arguments !== '') args = JSON.parse(item.arguments);
          } catch (e) {
            return fail(`failed to parse function call arguments: ${(e as Error).message}`);
          }
          const call = { id: str(item.call_id), name: str(item.name), arguments: args };
          if (last && last.role === 'assistant') (last.toolCalls ??= []).push(call);
          else
            messages.push({
              role: 'assistant',
              content: '',
              toolCalls: [call],
              ...(pendingThinking ? { thinking: pendingThinking } : {}),
            });
          pendingThinking = '';
          break;
        }
        case 'function_call_output': {
          const out = item.output;
          const text = typeof out === 'string' ? out : responsesContent(out, `input[${i}]`);
          if (typeof text !== 'string') return text;
          messages.push({ role: 'tool', content: text });
          break;
        }
        case 'reasoning':
          pendingThinking = str(item.encrypted_content);
          break;
        case 'web_search_call':
          break;
        case '':
          return fail(`input[${i}]: input item missing required 'type' field`);
        default:
          return fail(`input[${i}]: unknown input item type: ${JSON.stringify(type)}`);
      }
    }
    if (pendingThinking) messages.push({ role: 'assistant', content: '', thinking: pendingThinking });
  } else if (input !== undefined && input !== null) return fail('input must be a string or array');
  const think = thinkFromEffort(body.reasoning?.effort);
  if (think.error) return fail(think.error);
  const rawTools: Body[] = Array.isArray(body.tools) ? body.tools.filter((t: any) => t && typeof t === 'object') : [];
  const tools: SimTool[] = rawTools
    .filter((t) => typeof t.name === 'string')
    .map((t) => ({ name: t.name, description: str(t.description), parameters: t.parameters }));
  const fmt = body.text?.format;
  const format =
    fmt?.type === 'json_schema' && fmt.schema && typeof fmt.schema === 'object'
      ? (fmt.schema as Record<string, unknown>)
      : undefined;
  const maxOut = num(body.max_output_tokens);
  const p = base(label(body), body.stream === true, {
    messages,
    tools,
    think: think.value,
    format,
    cap: maxOut,
    logprobs: false,
    topLogprobs: 0,
  });
  p.echo = {
    instructions: str(body.instructions),
    truncation: typeof body.truncation === 'string' ? body.truncation : undefined,
    tools: rawTools,
    textFormat: fmt && typeof fmt === 'object' ? fmt : undefined,
    reasoning:
      body.reasoning && typeof body.reasoning === 'object'
        ? { effort: str(body.reasoning.effort), summary: str(body.reasoning.summary) }
        : undefined,
    topP: num(body.top_p),
    temperature: num(body.temperature),
    maxOutputTokens: maxOut,
    background: body.background === true,
  };
  return p;
}

export function parseCompletion(kind: CompletionKind, body: Body): ParsedCompletion | ParseFailure {
  switch (kind) {
    case 'chat':
      return parseOllamaChat(body);
    case 'generate':
      return parseGenerate(body);
    case 'oai-chat':
      return parseOpenAiChat(body);
    case 'oai-completion':
      return parseOpenAiCompletion(body);
    case 'messages':
      return parseMessages(body);
    case 'responses':
      return parseResponses(body);
  }
}
