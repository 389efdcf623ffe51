/**
 * Routing-suite workload driver, run as its own process: replays a planned request list (open loop,
 * each request sent at its scheduled time whatever happens to earlier ones) and records per request
 * time to first token, end-to-end latency, status and the backend that served it.
 * Usage: node driver.js <job.json> <out.json>
 */
import { readFileSync, writeFileSync } from 'fs';
import * as http from 'http';
import type { PlannedRequest } from './scenario';

export interface DriverJob {
  requests: PlannedRequest[];
  /** Base URL per model (per-model pools) or '*' for all; several URLs (balancer replicas) take turns. */
  targets: Record<string, string | string[]>;
  stream: boolean;
  timeoutMs: number;
  /** Maps an upstream identity (X-Balancer-Backend, or nginx's $upstream_addr, or HAProxy's server name) to a backend name. */
  upstreamNames: Record<string, string>;
}

export interface RequestRecord {
  i: number;
  model: string;
  status: number;
  error?: string;
  ttftMs: number;
  e2eMs: number;
  backend: string;
}

function backendOf(h: http.IncomingHttpHeaders, names: Record<string, string>): string {
  const raw = (h['x-balancer-backend'] ?? h['x-upstream'] ?? '') as string;
  // nginx lists every upstream it tried ("a, b" or "a : b"): the last one answered.
  const last =
    raw
      .split(/[,:]\s+|\s+:\s+/)
      .pop()
      ?.trim() ?? '';
  return names[last] ?? (last || 'unknown');
}

function main(): void {
  const job: DriverJob = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  const out = process.argv[3];
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const records: RequestRecord[] = [];
  let pending = job.requests.length;
  const t0 = performance.now() + 50;
  const finishOne = (r: RequestRecord): void => {
    records.push(r);
    if (--pending === 0) {
      writeFileSync(out, JSON.stringify({ records, wallMs: performance.now() - t0 }));
      process.exit(0);
    }
  };
  if (pending === 0) {
    writeFileSync(out, JSON.stringify({ records, wallMs: 0 }));
    return;
  }
  let turn = 0;
  const send = (p: PlannedRequest): void => {
    const t = job.targets[p.model] ?? job.targets['*'];
    const base = Array.isArray(t) ? t[turn++ % t.length] : t;
    const u = new URL('/api/chat', base);
    const body = JSON.stringify({
      model: p.model,
      messages: [{ role: 'user', content: p.prompt }],
      stream: job.stream,
      options: { num_predict: p.outputTokens },
    });
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    if (p.session) headers['x-session-id'] = p.session;
    const start = performance.now();
    let ttft = NaN;
    let settled = false;
    const rec = (status: number, backend: string, error?: string): void => {
      if (settled) return;
      settled = true;
      const e2e = performance.now() - start;
      finishOne({
        i: p.i,
        model: p.model,
        status,
        error,
        ttftMs: Number.isNaN(ttft) ? e2e : ttft,
        e2eMs: e2e,
        backend,
      });
    };
    const req = http.request(
      { host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers },
      (res) => {
        const backend = backendOf(res.headers, job.upstreamNames);
        let errText = '';
        res.on('data', (d: Buffer) => {
          if (Number.isNaN(ttft)) ttft = performance.now() - start;
          if (res.statusCode !== 200 && errText.length < 300) errText += d.toString();
        });
        res.on('end', () =>
          rec(
            res.statusCode ?? 0,
            backend,
            res.statusCode === 200 ? undefined : errText.slice(0, 200) || `HTTP ${res.statusCode}`,
          ),
        );
        res.on('error', (e) => rec(0, backend, e.message));
        res.on('aborted', () => rec(0, backend, 'aborted'));
      },
    );
    req.setTimeout(job.timeoutMs, () => req.destroy(new Error(`timeout after ${job.timeoutMs} ms`)));
    req.on('error', (e) => rec(0, 'none', e.message));
    req.end(body);
  };
  for (const p of job.requests) {
    setTimeout(() => send(p), Math.max(0, t0 + p.atMs - performance.now()));
  }
}

if (require.main === module) main();
