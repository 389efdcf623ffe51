import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import * as http from 'http';
import { AddressInfo } from 'net';
import { startSimServer, SimConfig, SimServer } from '@app/ollama-sim';
import { AppModule } from '../src/app.module';
import { BALANCER_CONFIG, loadBalancerConfig } from '../src/config/balancer-config';

export interface Cluster {
  app: INestApplication;
  url: string;
  sims: SimServer[];
  close(): Promise<void>;
}

/** Quick defaults so tests notice health changes fast; tests override what they need. */
export const FAST_ENV: Record<string, string> = {
  HEALTH_INTERVAL_MS: '100',
  HEALTH_TIMEOUT_MS: '500',
  HEALTH_FAILURE_THRESHOLD: '2',
  INVENTORY_INTERVAL_MS: '200',
  AGENT_INTERVAL_MS: '100',
  LOG_REQUESTS: 'false',
  LOG_LEVEL: 'error',
};

export async function startSims(configs: SimConfig[]): Promise<SimServer[]> {
  return Promise.all(configs.map((c, i) => startSimServer({ name: `sim${i + 1}`, ...c, port: 0 })));
}

/** Boots the real balancer app (the same module graph as production) on a real port. */
export async function startBalancer(env: Record<string, string>): Promise<{ app: INestApplication; url: string }> {
  const config = loadBalancerConfig({ ...FAST_ENV, ...env });
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
    .overrideProvider(BALANCER_CONFIG)
    .useValue(config)
    .compile();
  const app = moduleRef.createNestApplication({ logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  const port = (app.getHttpServer().address() as AddressInfo).port;
  return { app, url: `http://127.0.0.1:${port}` };
}

/** Simulated servers named b1..bn behind a balancer, ready (backends healthy, inventory known). */
export async function startCluster(configs: SimConfig[], env: Record<string, string> = {}, extraBackend: Record<string, unknown>[] = []): Promise<Cluster> {
  const sims = await startSims(configs);
  const file = writeConfigFile({
    backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url, ...(extraBackend[i] ?? {}) })),
  });
  const { app, url } = await startBalancer({ BALANCER_CONFIG: file, ...env });
  await waitFor(async () => {
    const st = await getJson(`${url}/balancer/status`);
    return st.body.backends.every((b: any) => b.health === 'healthy' && b.inventoryAt !== null);
  }, 10_000, 'backends healthy with inventory');
  return {
    app,
    url,
    sims,
    async close() {
      await app.close();
      await Promise.all(sims.map((s) => s.close()));
    },
  };
}

import { mkdtempSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';

export function writeConfigFile(obj: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'balancer-test-'));
  const file = join(dir, 'balancer.json');
  writeFileSync(file, JSON.stringify(obj));
  return file;
}

export async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await cond()) return;
    } catch (e) {
      last = e;
    }
    await sleep(25);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any;
  text: string;
}

/** A plain HTTP request (fresh connection) that resolves with the whole answer. */
export function request(url: string, opts: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const payload = opts.body === undefined ? undefined : typeof opts.body === 'string' || Buffer.isBuffer(opts.body) ? opts.body : JSON.stringify(opts.body);
    const req = http.request(
      { hostname: u.hostname, port: u.port, path: u.pathname + u.search, method: opts.method ?? (payload ? 'POST' : 'GET'), headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...opts.headers }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: any = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export const getJson = (url: string, headers?: Record<string, string>) => request(url, { headers });

export interface TimedChunk {
  at: number;
  text: string;
}

/** Streams a POST and records when each chunk arrived. */
export function streamTimed(url: string, body: unknown, onChunk?: (c: TimedChunk, req: http.ClientRequest) => void): Promise<{ status: number; headers: http.IncomingHttpHeaders; chunks: TimedChunk[] }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const payload = JSON.stringify(body);
    const req = http.request({ hostname: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      const chunks: TimedChunk[] = [];
      res.on('data', (c: Buffer) => {
        const chunk = { at: Date.now(), text: c.toString('utf8') };
        chunks.push(chunk);
        onChunk?.(chunk, req);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks }));
      // A client that destroys its own request resolves with what it saw.
      res.on('error', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks }));
      res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks }));
    });
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
    req.end(payload);
  });
}
