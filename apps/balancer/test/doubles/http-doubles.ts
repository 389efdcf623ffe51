import { EventEmitter } from 'events';
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'http';
import { PassThrough } from 'stream';

/**
 * Socket-free stand-ins for the http objects a model request touches, for the unit specs of
 * ModelRequest and UpstreamAttempt. Only what those classes use; e2e specs use the real ones.
 */

/** The client's request as the proxy has it after reading the body. */
export function clientRequest(method = 'POST', url = '/api/chat', headers: IncomingHttpHeaders = {}): IncomingMessage {
  return Object.assign(new EventEmitter(), {
    method,
    url,
    headers: { 'x-request-id': 'req-1', ...headers },
  }) as unknown as IncomingMessage;
}

/** The client's response: records the one writeHead, the bytes written and how it ended. */
export class ClientResponse extends EventEmitter {
  statusCode = 200;
  headersSent = false;
  destroyed = false;
  writableEnded = false;
  writableFinished = false;
  head: { status: number; headers: Record<string, unknown> } | null = null;
  readonly written: Buffer[] = [];
  private readonly preset: Record<string, unknown> = {};

  setHeader(name: string, value: unknown): this {
    this.preset[name.toLowerCase()] = value;
    return this;
  }
  hasHeader(name: string): boolean {
    return name.toLowerCase() in this.preset;
  }
  writeHead(status: number, headers: Record<string, unknown> = {}): this {
    if (this.headersSent) throw new Error('writeHead twice');
    this.statusCode = status;
    this.headersSent = true;
    this.head = { status, headers: { ...this.preset, ...headers } };
    return this;
  }
  write(chunk: Buffer | string): boolean {
    if (!this.headersSent) this.writeHead(this.statusCode);
    this.written.push(Buffer.from(chunk));
    return true;
  }
  end(chunk?: Buffer | string): this {
    if (chunk !== undefined) this.write(chunk);
    if (!this.headersSent) this.writeHead(this.statusCode);
    this.writableEnded = true;
    this.writableFinished = true;
    return this;
  }
  destroy(): this {
    this.destroyed = true;
    return this;
  }
  get body(): string {
    return Buffer.concat(this.written).toString('utf8');
  }
  asServerResponse(): ServerResponse {
    return this as unknown as ServerResponse;
  }
}

/** The request http-proxy-middleware would open to the backend. */
export class ProxyRequest extends EventEmitter {
  readonly socket = null;
  sentBody: Buffer | null = null;
  ended = false;
  destroyed = false;
  setHeader(): void {}
  end(body?: Buffer): void {
    this.sentBody = body ?? null;
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  asClientRequest(): ClientRequest {
    return this as unknown as ClientRequest;
  }
}

/** The backend's response: status and headers now, body chunks and its end when the spec says. */
export class BackendResponse extends PassThrough {
  complete = false;
  readonly rawHeaders: string[];
  constructor(
    readonly statusCode: number,
    readonly headers: IncomingHttpHeaders,
    readonly req: ProxyRequest,
  ) {
    super();
    this.rawHeaders = Object.entries(headers).flatMap(([k, v]) => [k, String(v)]);
  }
  /** The body ends cleanly (`complete`, as Node sets it). */
  finish(chunk?: string): void {
    this.complete = true;
    this.end(chunk);
  }
  asIncomingMessage(): IncomingMessage {
    return this as unknown as IncomingMessage;
  }
}

/** Lets stream events run. */
export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
