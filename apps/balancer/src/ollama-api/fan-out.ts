import { Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'http';
import { Backend } from '../fleet/backend';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { UpstreamResponse } from '../fleet/ollama-client';
import { addCorsHeaders } from '../http/cors';
import { sendError } from '../http/errors';

const JSON_CT = 'application/json; charset=utf-8';

/** What one backend answered to a fanned-out call (a transport error reads as 502 with its message). */
export interface BackendAnswer {
  b: Backend;
  status: number;
  /** The body as text (the error message when the call itself failed). */
  text: string;
  body: Buffer | null;
  /** The call failed before an answer (refused, reset, timed out). */
  failed: boolean;
  elapsedMs: number;
}

/**
 * What every fleet-wide call needs: which backends it goes to, the one fan-out loop, the headers
 * that may travel, and the shared answers. The request's headers were readied by the proxy before
 * the hand-off (hop-by-hop ones and credentials not meant for the backends are gone).
 */
@Injectable()
export class FanOut {
  constructor(private readonly registry: BackendRegistry) {}

  /**
   * Which backends a management call goes to: every available one, or those named in the
   * `X-Balancer-Backends` header or `?backends=` query (names from configuration only).
   */
  targets(req: IncomingMessage): Backend[] | Error {
    const q = req.url!.indexOf('?');
    const fromQuery = q >= 0 ? new URLSearchParams(req.url!.slice(q + 1)).get('backends') : null;
    const h = req.headers['x-balancer-backends'];
    const named = (Array.isArray(h) ? h[0] : h) ?? fromQuery;
    const live = this.registry.available();
    if (!named || named.trim() === '' || named.trim() === 'all') return live;
    const out: Backend[] = [];
    for (const n of named
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const b = this.registry.get(n);
      if (!b)
        return new Error(
          `unknown backend '${n}' (configured: ${this.registry.backends.map((x) => x.name).join(', ')})`,
        );
      if (!b.isAvailable())
        return new Error(`backend '${n}' is not available (health: ${b.health}${b.cordoned ? ', cordoned' : ''})`);
      out.push(b);
    }
    return out;
  }

  /** Calls every target at once and waits for all; never rejects. */
  all(targets: Backend[], call: (b: Backend) => Promise<UpstreamResponse>): Promise<BackendAnswer[]> {
    return Promise.all(
      targets.map(async (b): Promise<BackendAnswer> => {
        const t0 = Date.now();
        try {
          const r = await call(b);
          return {
            b,
            status: r.status,
            text: r.body.toString('utf8'),
            body: r.body,
            failed: false,
            elapsedMs: Date.now() - t0,
          };
        } catch (e) {
          return { b, status: 502, text: (e as Error).message, body: null, failed: true, elapsedMs: Date.now() - t0 };
        }
      }),
    );
  }

  /** The client's headers that go on to the backends: its Authorization if it is still there, and the request id. */
  upstreamHeaders(req: IncomingMessage): Record<string, string> {
    const h: Record<string, string> = {};
    const auth = req.headers.authorization;
    if (auth) h.authorization = auth;
    const id = req.headers['x-request-id'];
    if (typeof id === 'string') h['x-request-id'] = id;
    return h;
  }

  noBackend(req: IncomingMessage, res: ServerResponse): void {
    sendError(
      req,
      res,
      503,
      this.registry.backends.length === 0
        ? 'no Ollama backends are configured'
        : 'no healthy Ollama backend is available',
      { 'Retry-After': 5 },
    );
  }
}

/** The balancer's own answer: JSON, with CORS for an allowed Origin (as the backends' Ollama answers). */
export function sendJson(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  obj: unknown,
  head = false,
  extra: Record<string, string> = {},
): void {
  const body = JSON.stringify(obj);
  res.writeHead(
    status,
    ownHeaders(req, { 'Content-Type': JSON_CT, 'Content-Length': Buffer.byteLength(body), ...extra }),
  );
  res.end(head ? undefined : body);
}

/** Headers of an answer the balancer writes itself, with CORS for the request's Origin when allowed. */
export function ownHeaders<T extends Record<string, string | number | string[]>>(req: IncomingMessage, headers: T): T {
  if (req.headers.origin !== undefined) addCorsHeaders(req.headers.origin, headers);
  return headers;
}

/**
 * The status for answers that did not all succeed: when every backend refused the request itself
 * (a 4xx: "model is required", "not found"), that is the client's answer too; a backend that failed
 * (5xx, or no answer) makes it 500, never a 500 for the client's own mistake.
 */
export function failureStatus(failed: BackendAnswer[]): number {
  const clientErrors = failed.filter((f) => !f.failed && f.status >= 400 && f.status < 500);
  return clientErrors.length === failed.length && clientErrors.length > 0 ? clientErrors[0].status : 500;
}

/** A backend's error message: Ollama's {"error":"..."} when it sent one, else the start of the text. */
export function errText(text: string, status: number): string {
  try {
    const e = JSON.parse(text)?.error;
    if (typeof e === 'string') return e;
  } catch {
    // not JSON
  }
  return text.trim().slice(0, 200) || `HTTP ${status}`;
}

/** `b1: why; b2: why` for the answers that failed. */
export function failures(answers: BackendAnswer[]): string {
  return answers.map((f) => `${f.b.name}: ${errText(f.text, f.status)}`).join('; ');
}
