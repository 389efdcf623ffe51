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
export async function startBalancer(
  env: Record<string, string>,
  overrides: ProviderOverride[] = [],
): Promise<{ app: INestApplication; url: string }> {
  const config = loadBalancerConfig({ ...FAST_ENV, ...env });
  let builder = Test.createTestingModule({ imports: [AppModule] })
    .overrideProvider(BALANCER_CONFIG)
    .useValue(config);
  for (const o of overrides) builder = builder.overrideProvider(o.provide).useValue(o.useValue);
  const moduleRef = await builder.compile();
  const app = moduleRef.createNestApplication({ logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  const port = (app.getHttpServer().address() as AddressInfo).port;
  return { app, url: `http://127.0.0.1:${port}` };
}

/** A provider replaced in the app (only for what a test cannot drive for real, such as the clock of a day-long window). */
export interface ProviderOverride {
  provide: string | symbol;
  useValue: unknown;
}

/** Simulated servers named b1..bn behind a balancer, ready (backends healthy, inventory known). */
export async function startCluster(
  configs: SimConfig[],
  env: Record<string, string> = {},
  extraBackend: Record<string, unknown>[] = [],
  overrides: ProviderOverride[] = [],
): Promise<Cluster> {
  const sims = await startSims(configs);
  const file = writeConfigFile({
    backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url, ...(extraBackend[i] ?? {}) })),
  });
  const { app, url } = await startBalancer({ BALANCER_CONFIG: file, ...env }, overrides);
  try {
    await waitFor(
      async () => {
        // The status view needs the admin token, or a client key when keys are configured.
        const key = env.ADMIN_TOKEN ?? env.API_KEYS?.split(',')[0]?.split(':')[1];
        const st = await getJson(`${url}/balancer/status`, key ? { authorization: `Bearer ${key}` } : undefined);
        return st.body.backends.every((b: any) => b.health === 'healthy' && b.inventoryAt !== null);
      },
      10_000,
      'backends healthy with inventory',
    );
  } catch (e) {
    // Never leave a half-started cluster behind: its sockets would keep Jest from exiting.
    await app.close();
    await Promise.all(sims.map((s) => s.close()));
    throw e;
  }
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
export function request(
  url: string,
  opts: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const payload =
      opts.body === undefined
        ? undefined
        : typeof opts.body === 'string' || Buffer.isBuffer(opts.body)
          ? opts.body
          : JSON.stringify(opts.body);
    const req = http.request(
      {
        hostname: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: opts.method ?? (payload ? 'POST' : 'GET'),
        headers: {
          ...(payload
            ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }
            : {}),
          ...opts.headers,
        },
        agent: false,
      },
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
export function streamTimed(
  url: string,
  body: unknown,
  onChunk?: (c: TimedChunk, req: http.ClientRequest) => void,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; chunks: TimedChunk[] }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const payload = JSON.stringify(body);
    const req = http.request(
      {
        hostname: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        agent: false,
      },
      (res) => {
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
      },
    );
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
    req.end(payload);
  });
}

// ---- Child processes (a simulator to SIGKILL, the real balancer to SIGTERM) --------------------

import { ChildProcess, spawn } from 'child_process';
import { readFileSync } from 'fs';
import { createServer } from 'net';
import { resolve as resolvePath } from 'path';

export const REPO_ROOT = resolvePath(__dirname, '../../..');
const TS_NODE = ['-r', 'ts-node/register/transpile-only', '-r', 'tsconfig-paths/register'];

export interface Child {
  proc: ChildProcess;
  url: string;
  output(): string;
  exited: Promise<number | null>;
}

function spawnTs(
  script: string,
  args: string[],
  env: Record<string, string>,
  nodeArgs: string[],
  ready: RegExp,
  timeoutMs: number,
): Promise<{ proc: ChildProcess; match: RegExpExecArray; output: () => string; exited: Promise<number | null> }> {
  const proc = spawn(process.execPath, [...nodeArgs, ...TS_NODE, script, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, TS_NODE_PROJECT: join(REPO_ROOT, 'tsconfig.json'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      rej(new Error(`${script} did not start within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = (c: Buffer) => {
      out += c.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        res({ proc, match: m, output: () => out, exited });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`${script} exited with ${code} before it was ready:\n${out}`));
    });
  });
}

/** A simulated Ollama server in its own process (so it can be SIGKILLed). */
export async function spawnSim(config: SimConfig): Promise<Child> {
  const file = writeConfigFile(config);
  const s = await spawnTs(
    'libs/ollama-sim/src/cli.ts',
    ['--port', '0', '--host', '127.0.0.1', '--config', file],
    {},
    [],
    /listening on (http:\/\/127\.0\.0\.1:\d+)/,
    30_000,
  );
  return { proc: s.proc, url: s.match[1], output: s.output, exited: s.exited };
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => res(port));
    });
  });
}

/**
 * The real balancer (apps/balancer/src/main.ts) in its own process, as production starts it. Ready
 * when it logs "Listening on", so LOG_LEVEL must stay at log or above.
 */
export async function spawnBalancer(env: Record<string, string>, nodeArgs: string[] = []): Promise<Child> {
  const port = await freePort();
  const s = await spawnTs(
    'apps/balancer/src/main.ts',
    [],
    { ...FAST_ENV, LOG_LEVEL: 'log', HOST: '127.0.0.1', PORT: String(port), ...env },
    nodeArgs,
    /Listening on http:\/\/127\.0\.0\.1:\d+/,
    60_000,
  );
  return { proc: s.proc, url: `http://127.0.0.1:${port}`, output: s.output, exited: s.exited };
}

/** Resident memory of a process in bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Parses an NDJSON or SSE body into its objects (`[DONE]` becomes the string "[DONE]"). */
export function parseStream(text: string): any[] {
  const out: any[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.startsWith('data: ') ? raw.slice(6) : raw;
    if (line.trim() === '') continue;
    if (line.trim() === '[DONE]') {
      out.push('[DONE]');
      continue;
    }
    try {
      out.push(JSON.parse(line));
    } catch {
      out.push({ unparsable: line });
    }
  }
  return out;
}

/** Every backend idle and the queue empty, as the status endpoint reports. */
export async function waitIdle(url: string, timeoutMs = 10_000, headers?: Record<string, string>): Promise<any> {
  let last: any;
  await waitFor(
    async () => {
      last = (await getJson(`${url}/balancer/status`, headers)).body;
      return (
        last.queue.length === 0 &&
        last.backends.every((b: any) => b.inFlight === 0 && Object.keys(b.inFlightByModel).length === 0)
      );
    },
    timeoutMs,
    'every in-flight and queue count back to zero',
  );
  return last;
}

/** A gpu-agent in its own process (the fake NVML library reads FAKE_NVML_STATE from its process env). */
export interface AgentProcess {
  url: string;
  proc: ChildProcess;
  log: () => string;
}

/** Starts apps/gpu-agent from source in its own process, over the fake NVML library and one state file. */
export async function startAgent(
  name: string,
  statePath: string,
  ollamaUrl: string,
  extraEnv: Record<string, string> = {},
): Promise<AgentProcess> {
  const port = await freePort();
  let log = '';
  const proc = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', '-r', 'tsconfig-paths/register', 'apps/gpu-agent/src/main.ts'],
    {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        PORT: String(port),
        TS_NODE_PROJECT: join(REPO_ROOT, 'tsconfig.json'),
        TS_NODE_TRANSPILE_ONLY: '1',
        NVML_LIBRARY_PATH: join(REPO_ROOT, 'libs/nvml/fake/build/libnvidia-ml.so.1'),
        FAKE_NVML_STATE: statePath,
        OLLAMA_HOST: ollamaUrl,
        NVML_POLL_INTERVAL_MS: '200',
        OLLAMA_POLL_INTERVAL_MS: '500',
        HOSTNAME_LABEL: name,
        AGENT_TOKEN: '',
        NO_COLOR: '1',
        // Where a balancer reaches it, if it registers itself (BALANCER_URL in extraEnv).
        AGENT_ADVERTISE_URL: `http://127.0.0.1:${port}`,
        ...extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  proc.stdout!.on('data', (c) => (log += c));
  proc.stderr!.on('data', (c) => (log += c));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (proc.exitCode !== null)
        throw new Error(`gpu-agent ${name} exited with ${proc.exitCode}: ${log.slice(-2000)}`);
      const r = await getJson(`${url}/status`);
      return r.status === 200 && r.body.nvml?.available === true && r.body.gpus.length > 0;
    },
    30_000,
    `gpu-agent ${name} reading the fake NVML state`,
  );
  return { url, proc, log: () => log };
}
