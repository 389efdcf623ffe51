import { randomBytes } from 'crypto';
import type { IncomingMessage, ServerResponse } from 'http';
import { addCorsHeaders } from './cors';
import { canonicalKeys, MAX_JSON_DEPTH, nestsDeeperThan } from './request-fields';

export type ErrorType =
  | 'invalid_request_error'
  | 'not_found_error'
  | 'api_error'
  | 'authentication_error'
  | 'rate_limit_error'
  | 'permission_error';
/** Anthropic's error types (https://docs.anthropic.com/en/api/errors), as Ollama's /v1/messages maps statuses. */
export type AnthropicErrorType = ErrorType | 'request_too_large' | 'overloaded_error';

/** Which error shape a path's clients read. */
export type ErrorSurface = 'ollama' | 'openai' | 'anthropic';

/** True for the OpenAI-compatible surface (and Anthropic's, which lives under /v1 too). */
export function isOpenAiPath(url: string | undefined): boolean {
  return url !== undefined && url.startsWith('/v1/');
}

/** The error shape of a request's path (the query string ignored). */
export function errorSurface(url: string | undefined): ErrorSurface {
  if (url === undefined || !url.startsWith('/v1/')) return 'ollama';
  return url.startsWith('/v1/messages') && (url.length === 12 || url[12] === '?' || url[12] === '/')
    ? 'anthropic'
    : 'openai';
}

function typeFor(status: number): ErrorType {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 400 && status < 500) return 'invalid_request_error';
  return 'api_error';
}

/** Anthropic's type for a status: 413 request_too_large and 503 overloaded_error besides OpenAI's set. */
export function anthropicTypeFor(status: number): AnthropicErrorType {
  if (status === 413) return 'request_too_large';
  if (status === 503) return 'overloaded_error';
  return typeFor(status);
}

/**
 * The error body clients expect: Ollama's {"error":"..."}; on /v1/messages Anthropic's
 * {"type":"error","error":{"type","message"},"request_id":"req_..."} (a fresh id per error, 12
 * random bytes in hex, as Ollama's anthropic.NewError writes it); on the rest of /v1/* OpenAI's object.
 */
export function errorBody(url: string | undefined, status: number, message: string): string {
  switch (errorSurface(url)) {
    case 'anthropic':
      return JSON.stringify({
        type: 'error',
        error: { type: anthropicTypeFor(status), message },
        request_id: `req_${randomBytes(12).toString('hex')}`,
      });
    case 'openai':
      return JSON.stringify({ error: { message, type: typeFor(status), param: null, code: null } });
    case 'ollama':
      return JSON.stringify({ error: message });
  }
}

/**
 * Writes an error response unless a response already started (then the caller must end the stream
 * its own way). Never throws.
 */
export function sendError(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  message: string,
  extraHeaders?: Record<string, string | number>,
): void {
  if (res.headersSent || res.destroyed) return;
  const body = errorBody(req.url, status, message);
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    ...extraHeaders,
  };
  // The balancer's request id (set on req.headers when the request arrived), unless already on res.
  const id = req.headers['x-request-id'];
  if (typeof id === 'string' && !res.hasHeader('x-request-id')) headers['X-Request-Id'] = id;
  // A browser client must be able to read the error too (CORS as the backends' Ollama answers it).
  if (req.headers.origin !== undefined) addCorsHeaders(req.headers.origin, headers);
  try {
    res.writeHead(status, headers);
    res.end(body);
  } catch {
    res.destroy();
  }
}

/**
 * One more line or event that tells a client whose stream already began that it failed, in the
 * stream's own format: an NDJSON `{"error":...}` line; on Anthropic's /v1/messages an `error` event
 * (what its SDK throws on); on OpenAI's SSE a data event holding `error` (what its SDK throws on).
 */
export function midStreamError(contentType: string | undefined, message: string, url?: string): string | null {
  if (!contentType) return null;
  if (contentType.includes('ndjson')) return JSON.stringify({ error: message }) + '\n';
  if (contentType.includes('event-stream')) {
    if (errorSurface(url) === 'anthropic')
      return `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: 'api_error', message } })}\n\n`;
    return `data: ${JSON.stringify({ error: { message, type: 'api_error', param: null, code: null } })}\n\n`;
  }
  return null;
}

/**
 * Parses a request body that must be a JSON object. Answers 400 in the route's shape itself and
 * returns null when it is empty, nests too deep, is not JSON, is not an object, or names a field
 * twice in different case. The object's top-level keys come back as Ollama reads them (`MODEL` is
 * `model`; see request-fields.ts).
 */
export function parseJsonObject(req: IncomingMessage, res: ServerResponse, body: Buffer): Record<string, any> | null {
  if (body.length === 0) {
    sendError(req, res, 400, 'missing request body');
    return null;
  }
  // Before JSON.parse: a deep body costs seconds and gigabytes to parse, and its copies overflow the stack.
  if (nestsDeeperThan(body)) {
    sendError(req, res, 400, `invalid JSON in request body: nested deeper than ${MAX_JSON_DEPTH} levels`);
    return null;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (e) {
    sendError(req, res, 400, `invalid JSON in request body: ${(e as Error).message}`);
    return null;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    sendError(req, res, 400, 'request body must be a JSON object');
    return null;
  }
  const canonical = canonicalKeys(parsed as Record<string, unknown>);
  if (typeof canonical === 'string') {
    sendError(req, res, 400, `invalid request body: ${canonical}`);
    return null;
  }
  return canonical as Record<string, any>;
}
