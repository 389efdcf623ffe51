import * as http from 'http';

export interface TimedLine {
  at: number;
  line: string;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Each complete line (NDJSON) or event (SSE) with the time it arrived. */
  lines: TimedLine[];
  startedAt: number;
}

/** Plain node:http request that records when each line arrives (fetch may coalesce reads). */
export function request(
  url: string,
  opts: {
    method?: string;
    body?: unknown;
    rawBody?: string | Buffer;
    separator?: string;
    agent?: http.Agent;
    signal?: AbortSignal;
  } = {},
): Promise<RawResponse> {
  const sep = opts.separator ?? '\n';
  const payload = opts.rawBody ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  const startedAt = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: opts.method ?? (payload === undefined ? 'GET' : 'POST'),
        headers:
          payload === undefined
            ? {}
            : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
        agent: opts.agent ?? false,
        signal: opts.signal,
      },
      (res) => {
        let body = '';
        let pending = '';
        const lines: TimedLine[] = [];
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
          pending += c;
          let i: number;
          while ((i = pending.indexOf(sep)) !== -1) {
            const line = pending.slice(0, i);
            pending = pending.slice(i + sep.length);
            if (line !== '') lines.push({ at: Date.now(), line });
          }
        });
        res.on('end', () => {
          if (pending !== '') lines.push({ at: Date.now(), line: pending });
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, lines, startedAt });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (payload !== undefined) req.end(payload);
    else req.end();
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `fn` returns truthy (or throws after `timeoutMs`). */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, stepMs = 20): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error('waitFor: timed out');
    await sleep(stepMs);
  }
}

/** Connect error code for a plain request (ECONNREFUSED, ECONNRESET...), or 'ok:<status>'. */
export function probe(url: string, agent?: http.Agent): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: agent ?? false }, (res) => {
      res.resume();
      res.on('end', () => resolve(`ok:${res.statusCode}`));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    req.setTimeout(5000, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
  });
}
