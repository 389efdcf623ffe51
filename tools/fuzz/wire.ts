import * as net from 'net';

/** One request as bytes on the wire, with the ways a client can misbehave while sending it. */
export interface WireRequest {
  method: string;
  /** Sent as is on the request line (may be anything a client could type). */
  target: string;
  headers: [string, string][];
  body: Buffer;
  /** Content-Length sent minus the real length (0 = correct; undefined = no Content-Length). */
  lengthDelta?: number;
  /** Send the body chunked instead of with a Content-Length. */
  chunked?: boolean;
}

export interface WirePlan {
  /** Requests written back to back on one connection (more than one = pipelined). */
  requests: WireRequest[];
  /** The body goes out in this many pieces, `gapMs` apart (a slow client). */
  pieces?: number;
  gapMs?: number;
  /** The client hangs up this long after it started (an aborted request). */
  abortAfterMs?: number;
}

export interface WireResponse {
  status: number;
  headers: Record<string, string[]>;
  body: Buffer;
}

export interface WireOutcome {
  responses: WireResponse[];
  /** How the exchange ended. */
  end: 'answered' | 'closed' | 'timeout' | 'aborted';
  ms: number;
}

export function encodeRequest(r: WireRequest): Buffer {
  let head = `${r.method} ${r.target} HTTP/1.1\r\n`;
  for (const [k, v] of r.headers) head += `${k}: ${v}\r\n`;
  if (r.chunked) {
    head += 'Transfer-Encoding: chunked\r\n\r\n';
    const parts: Buffer[] = [Buffer.from(head, 'latin1')];
    if (r.body.length > 0) parts.push(Buffer.from(`${r.body.length.toString(16)}\r\n`), r.body, Buffer.from('\r\n'));
    parts.push(Buffer.from('0\r\n\r\n'));
    return Buffer.concat(parts);
  }
  if (r.lengthDelta !== undefined) head += `Content-Length: ${Math.max(0, r.body.length + r.lengthDelta)}\r\n`;
  head += '\r\n';
  return Buffer.concat([Buffer.from(head, 'latin1'), r.body]);
}

/** Sends a plan over one fresh connection and reads every answer (or the close, or the deadline). */
export function exchange(port: number, plan: WirePlan, timeoutMs: number): Promise<WireOutcome> {
  const bytes = Buffer.concat(plan.requests.map(encodeRequest));
  const heads = plan.requests.map((r) => r.method === 'HEAD');
  const started = Date.now();
  return new Promise((resolve) => {
    const parser = new ResponseParser(heads);
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const s = net.connect(port, '127.0.0.1');
    const finish = (end: WireOutcome['end']) => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      s.destroy();
      resolve({ responses: parser.responses, end, ms: Date.now() - started });
    };
    s.on('error', () => finish('closed'));
    s.on('close', () => {
      parser.close();
      finish(parser.responses.length === plan.requests.length ? 'answered' : 'closed');
    });
    s.on('data', (c: Buffer) => {
      parser.push(c);
      if (parser.responses.length === plan.requests.length) finish('answered');
    });
    s.on('connect', () => {
      const pieces = Math.max(1, plan.pieces ?? 1);
      if (pieces === 1) s.write(bytes);
      else {
        const size = Math.ceil(bytes.length / pieces);
        for (let i = 0; i < pieces; i++) {
          timers.push(
            setTimeout(
              () => {
                if (!s.destroyed) s.write(bytes.subarray(i * size, (i + 1) * size));
              },
              i * (plan.gapMs ?? 0),
            ),
          );
        }
      }
    });
    timers.push(setTimeout(() => finish('timeout'), timeoutMs));
    if (plan.abortAfterMs !== undefined) timers.push(setTimeout(() => finish('aborted'), plan.abortAfterMs));
  });
}

/** A small HTTP/1.1 response parser: status, headers, and Content-Length, chunked or close-delimited bodies. */
export class ResponseParser {
  readonly responses: WireResponse[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private closed = false;
  constructor(private readonly heads: boolean[]) {}

  push(c: Buffer): void {
    this.buf = this.buf.length === 0 ? c : Buffer.concat([this.buf, c]);
    while (this.parseOne());
  }

  close(): void {
    this.closed = true;
    while (this.parseOne());
  }

  private parseOne(): boolean {
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return false;
    const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) {
      // Not HTTP: keep it as a pseudo-answer so the caller sees it.
      this.responses.push({ status: 0, headers: {}, body: this.buf });
      this.buf = Buffer.alloc(0);
      return false;
    }
    const status = Number(m[1]);
    const headers: Record<string, string[]> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i < 0) continue;
      const k = l.slice(0, i).trim().toLowerCase();
      (headers[k] ??= []).push(l.slice(i + 1).trim());
    }
    const start = end + 4;
    const isHead = this.heads[this.responses.length] ?? false;
    let body: Buffer;
    let next: number;
    if (status < 200 || status === 204 || status === 304 || isHead) {
      body = Buffer.alloc(0);
      next = start;
    } else if ((headers['transfer-encoding'] ?? []).some((v) => /chunked/i.test(v))) {
      const parts: Buffer[] = [];
      let p = start;
      for (;;) {
        const eol = this.buf.indexOf('\r\n', p);
        if (eol < 0) return this.incomplete();
        const size = parseInt(this.buf.subarray(p, eol).toString('latin1'), 16);
        if (!Number.isFinite(size)) return this.incomplete();
        if (size === 0) {
          const trailerEnd = this.buf.indexOf('\r\n', eol + 2);
          if (trailerEnd < 0) return this.incomplete();
          next = trailerEnd + 2;
          break;
        }
        if (this.buf.length < eol + 2 + size + 2) return this.incomplete();
        parts.push(this.buf.subarray(eol + 2, eol + 2 + size));
        p = eol + 2 + size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length']) {
      const n = Number(headers['content-length'][0]);
      if (this.buf.length < start + n) return this.incomplete();
      body = this.buf.subarray(start, start + n);
      next = start + n;
    } else {
      if (!this.closed) return false;
      body = this.buf.subarray(start);
      next = this.buf.length;
    }
    this.buf = this.buf.subarray(next);
    // 1xx answers (100 Continue) come before the real one for the same request.
    if (status >= 200) this.responses.push({ status, headers, body });
    return true;
  }

  private incomplete(): boolean {
    return false;
  }
}
