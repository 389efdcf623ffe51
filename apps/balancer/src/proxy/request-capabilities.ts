/**
 * The model capabilities a request needs, as Ollama decides them (server/routes.go, fb30760):
 * `tools` when it gives tools, `thinking` when it asks to think (ChatHandler/GenerateHandler refuse
 * `think` on a model without it; /v1/messages relaxes it to nothing, so it needs none there),
 * `vision` when it carries images. A request needing one goes only where the model has it.
 */

const NONE: readonly string[] = [];
const TOOLS: readonly string[] = ['tools'];
const THINKING: readonly string[] = ['thinking'];
const VISION: readonly string[] = ['vision'];

/** The capabilities needed (a shared array: never modify it). */
export function neededCapabilities(path: string, body: Record<string, any>): readonly string[] {
  let tools = false;
  let thinking = false;
  let vision = false;
  switch (path) {
    case '/api/chat':
      tools = nonEmptyArray(body.tools);
      thinking = thinks(body.think);
      vision = someMessage(body.messages, (m) => nonEmptyArray(m.images));
      break;
    case '/api/generate':
      // Raw mode renders no template, so Ollama sets think to false there.
      thinking = body.raw !== true && thinks(body.think);
      vision = nonEmptyArray(body.images);
      break;
    case '/v1/chat/completions':
      tools = nonEmptyArray(body.tools);
      thinking = effortThinks(body.reasoning_effort ?? objectOf(body.reasoning)?.effort);
      vision = someMessage(body.messages, (m) => someContent(m.content, 'image_url'));
      break;
    case '/v1/responses':
      tools = nonEmptyArray(body.tools);
      thinking = effortThinks(objectOf(body.reasoning)?.effort);
      vision = Array.isArray(body.input) && someMessage(body.input, (m) => someContent(m.content, 'input_image'));
      break;
    case '/v1/messages':
      tools = nonEmptyArray(body.tools);
      vision = someMessage(body.messages, (m) => someContent(m.content, 'image'));
      break;
    default:
      return NONE;
  }
  if (!tools && !thinking && !vision) return NONE;
  if (tools && !thinking && !vision) return TOOLS;
  if (thinking && !tools && !vision) return THINKING;
  if (vision && !tools && !thinking) return VISION;
  const out: string[] = [];
  if (tools) out.push('tools');
  if (thinking) out.push('thinking');
  if (vision) out.push('vision');
  return out;
}

function nonEmptyArray(v: unknown): boolean {
  return Array.isArray(v) && v.length > 0;
}

/** Ollama's ThinkValue.Bool(): true, or a level ("low", "medium", "high", "max"). */
function thinks(v: unknown): boolean {
  return v === true || (typeof v === 'string' && v !== '' && v !== 'false');
}

/** openai.thinkFromReasoningEffort: any effort but "none" turns thinking on. */
function effortThinks(v: unknown): boolean {
  return typeof v === 'string' && v !== '' && v !== 'none';
}

function objectOf(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function someMessage(messages: unknown, test: (m: Record<string, any>) => boolean): boolean {
  if (!Array.isArray(messages)) return false;
  for (const m of messages) if (m !== null && typeof m === 'object' && test(m)) return true;
  return false;
}

function someContent(content: unknown, type: string): boolean {
  if (!Array.isArray(content)) return false;
  for (const part of content) if (part !== null && typeof part === 'object' && part.type === type) return true;
  return false;
}
