import type { IncomingMessage, ServerResponse } from 'http';

export type ErrorType = 'invalid_request_error' | 'not_found_error' | 'api_error' | 'authentication_error' | 'rate_limit_error' | 'permission_error';

/** True for the OpenAI-compatible surface, whose errors take OpenAI's shape. */
export function isOpenAiPath(url: string | undefined): boolean {
  return url !== undefined && url.startsWith('/v1/');
}

function typeFor(status: number): ErrorType {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 400 && status < 500) return 'invalid_request_error';
  return 'api_error';
}

/** The error body clients expect: Ollama's {"error":"..."} or, on /v1/*, OpenAI's object. */
export function errorBody(url: string | undefined, status: number, message: string): string {
  if (isOpenAiPath(url)) return JSON.stringify({ error: { message, type: typeFor(status), param: null, code: null } });
  return JSON.stringify({ error: message });
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
  try {
    res.writeHead(status, headers);
    res.end(body);
  } catch {
    res.destroy();
  }
}

/** One more line or event that tells a client whose stream already began that it failed. */
export function midStreamError(contentType: string | undefined, message: string): string | null {
  if (!contentType) return null;
  if (contentType.includes('ndjson')) return JSON.stringify({ error: message }) + '\n';
  if (contentType.includes('event-stream')) return `data: ${JSON.stringify({ error: { message, type: 'api_error', param: null, code: null } })}\n\n`;
  return null;
}

/**
 * Parses a request body that must be a JSON object. Answers 400 in the route's shape itself and
 * returns null when it is empty, not JSON, or not an object.
 */
export function parseJsonObject(req: IncomingMessage, res: ServerResponse, body: Buffer): Record<string, any> | null {
  if (body.length === 0) {
    sendError(req, res, 400, 'missing request body');
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
  return parsed as Record<string, any>;
}
