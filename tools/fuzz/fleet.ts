import { ChildProcess, spawn } from 'child_process';
import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'fs';
import * as http from 'http';
import * as net from 'net';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import { SimConfig, SimModel, SimServer, startSimServer } from '../../libs/ollama-sim/src';
import { FUZZ_ADMIN, FUZZ_KEY, FUZZ_LIMITED_KEY } from './arbitraries';

/** The repository root, from tools/fuzz (source) or dist/tools/fuzz (built). */
export const REPO = resolve(__dirname, __dirname.includes(`${join('dist', 'tools')}`) ? '../../..' : '../..');

export const BASE_MODELS: SimModel[][] = [
  [
    { name: 'llama3.2:latest', sizeBytes: 200_000_000 },
    { name: 'qwen2.5:0.5b', sizeBytes: 100_000_000 },
    { name: 'nomic-embed-text:latest', sizeBytes: 50_000_000, embedding: true, embeddingDims: 8 },
  ],
  [
    { name: 'llama3.2:latest', sizeBytes: 200_000_000 },
    { name: 'nomic-embed-text:latest', sizeBytes: 50_000_000, embedding: true, embeddingDims: 8 },
  ],
];

const SIM: SimConfig = {
  tokensPerSecond: 5000,
  promptTokensPerSecond: 1e7,
  defaultOutputTokens: 3,
  maxOutputTokens: 8,
  pullMs: 30,
  loadMsPerGB: 5,
  numParallel: 4,
  embeddingDims: 8,
};

/** The balancer's settings under fuzzing: short timeouts, a 1 MiB body limit, keys, open model management. */
export const FUZZ_ENV: Record<string, string> = {
  API_KEYS: `fuzz:${FUZZ_KEY},limited:${FUZZ_LIMITED_KEY}:0:llama3.2`,
  ADMIN_TOKEN: FUZZ_ADMIN,
  MODEL_MANAGEMENT: 'open',
  MAX_BODY_BYTES: String(1024 * 1024),
  BODY_TIMEOUT_MS: '1500',
  HEADERS_TIMEOUT_MS: '5000',
  IDLE_STREAM_TIMEOUT_MS: '5000',
  QUEUE_TIMEOUT_MS: '5000',
  HEALTH_INTERVAL_MS: '500',
  HEALTH_TIMEOUT_MS: '2000',
  INVENTORY_INTERVAL_MS: '2000',
  LOG_LEVEL: 'log',
  LOG_REQUESTS: 'true',
  DRAIN_TIMEOUT_MS: '1000',
};

export interface Fleet {
  url: string;
  port: number;
  sims: SimServer[];
  proc: ChildProcess;
  /** stdout of the balancer since it started. */
  stdout(): string;
  stderr(): string;
  alive(): boolean;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => res(port));
    });
  });
}

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * How to run the real balancer: the built dist/ when it is newer than every source file under
 * apps/balancer/src (what `npm test` builds first), else the sources through ts-node.
 */
export function balancerCommand(): string[] {
  const built = join(REPO, 'dist/apps/balancer/src/main.js');
  if (existsSync(built) && statSync(built).mtimeMs >= newest(join(REPO, 'apps/balancer/src'))) return [built];
  return [
    '-r',
    'ts-node/register/transpile-only',
    '-r',
    'tsconfig-paths/register',
    join(REPO, 'apps/balancer/src/main.ts'),
  ];
}

export async function startFleet(extraEnv: Record<string, string> = {}): Promise<Fleet> {
  const sims = await Promise.all(
    BASE_MODELS.map((models, i) => startSimServer({ ...SIM, name: `sim${i + 1}`, models, port: 0 })),
  );
  const dir = mkdtempSync(join(tmpdir(), 'balancer-fuzz-'));
  const file = join(dir, 'balancer.json');
  writeFileSync(file, JSON.stringify({ backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url })) }));
  const port = await freePort();
  const proc = spawn(process.execPath, balancerCommand(), {
    cwd: REPO,
    env: {
      ...process.env,
      TS_NODE_PROJECT: join(REPO, 'tsconfig.json'),
      BALANCER_CONFIG: file,
      HOST: '127.0.0.1',
      PORT: String(port),
      ...FUZZ_ENV,
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
  const url = `http://127.0.0.1:${port}`;
  // A runner that dies (an exception, process.exit) takes its balancer with it: left behind, one
  // kept polling its dead simulators for the rest of a session.
  const reap = () => proc.kill('SIGKILL');
  process.once('exit', reap);
  const fleet: Fleet = {
    url,
    port,
    sims,
    proc,
    stdout: () => out,
    stderr: () => err,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    async stop() {
      process.removeListener('exit', reap);
      if (fleet.alive()) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGKILL');
        await exited;
      }
      await Promise.all(sims.map((s) => s.close()));
    },
  };
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (!fleet.alive()) {
      await fleet.stop();
      throw new Error(`the balancer exited before it was ready:\n${out.slice(-3000)}\n${err.slice(-3000)}`);
    }
    const st = await getStatus(url).catch(() => null);
    if (st && st.backends.every((b: any) => b.health === 'healthy' && b.inventoryAt !== null)) return fleet;
    if (Date.now() > deadline) {
      await fleet.stop();
      throw new Error(`the balancer was not ready within 90 s:\n${out.slice(-3000)}\n${err.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** GET with the admin token; resolves with the parsed JSON body (rejects on any failure or timeout). */
export function getStatus(url: string, path = '/balancer/status', timeoutMs = 5000): Promise<any> {
  return getJson(`${url}${path}`, { authorization: `Bearer ${FUZZ_ADMIN}` }, timeoutMs).then((r) => r.body);
}

export function getJson(
  url: string,
  headers: Record<string, string> = {},
  timeoutMs = 5000,
): Promise<{ status: number; body: any }> {
  return new Promise((res, rej) => {
    const req = http.get(url, { headers, agent: false, timeout: timeoutMs }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          res({ status: r.statusCode ?? 0, body: JSON.parse(text) });
        } catch {
          res({ status: r.statusCode ?? 0, body: text });
        }
      });
      r.on('error', rej);
    });
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on('error', rej);
  });
}
