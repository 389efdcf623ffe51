/**
 * The agent's side of registration, against small stub balancers on real sockets: the real
 * gpu-agent (AppModule over the fake libnvidia-ml.so.1) registers, heartbeats, backs off while a
 * balancer is down or refuses, never crashes, and deregisters when it shuts down. The balancer's
 * real endpoint is tested against the real agent in apps/balancer/test.
 */
import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { spawn } from 'child_process';
import { createServer, IncomingMessage, Server, ServerResponse } from 'http';
import { AddressInfo } from 'net';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { AGENT_REGISTRATION_PATH, parseAgentRegistration, parseAgentStatus } from '@app/common';
import { fakeNvmlLibraryPath, resetNvmlAddon, setNativeEnv, writeFakeNvmlStateSync } from '@app/nvml/testing';
import { AppModule } from '../src/app.module';
import { BalancerLink } from '../src/registration/balancer-link';

const TOKEN = 'registration-token-0123456789';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: unknown;
}

/** A stub balancer: records every request and answers with what `answer` returns. */
class StubBalancer {
  readonly seen: Seen[] = [];
  answer: (req: Seen) => { status: number; body?: unknown } = () => ({
    status: 200,
    body: { name: 'gpu-node-7', heartbeatIntervalMs: 30, ttlMs: 90 },
  });
  private server: Server | null = null;
  port = 0;

  async listen(port = 0): Promise<this> {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (raw += c));
      req.on('end', () => {
        const seen: Seen = {
          method: req.method!,
          url: req.url!,
          authorization: req.headers.authorization,
          body: raw ? JSON.parse(raw) : undefined,
        };
        this.seen.push(seen);
        const { status, body } = this.answer(seen);
        res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
        res.end(body === undefined ? undefined : JSON.stringify(body));
      });
    });
    await new Promise<void>((r) => this.server!.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  posts(): Seen[] {
    return this.seen.filter((s) => s.method === 'POST');
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise((r) => s.close(r));
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitFor<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('gpu-agent registration with stub balancers', () => {
  let dir: string;
  const apps: INestApplication[] = [];
  const stubs: StubBalancer[] = [];
  const savedEnv = { ...process.env };

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'gpu-agent-reg-'));
    const statePath = path.join(dir, 'state');
    setNativeEnv('FAKE_NVML_STATE', statePath);
    writeFakeNvmlStateSync(statePath, {
      driverVersion: '550.54.15',
      nvmlVersion: '12.550.54.15',
      gpus: [
        {
          name: 'NVIDIA L4',
          uuid: 'GPU-1',
          pciBusId: '00000000:01:00.0',
          utilGpu: 1,
          utilMemory: 1,
          memTotal: 24e9,
          memUsed: 1e9,
          temperature: 40,
          powerUsage: 20_000,
          powerLimit: 72_000,
          processes: [],
        },
      ],
    });
  });

  beforeEach(() => {
    process.env.NVML_LIBRARY_PATH = fakeNvmlLibraryPath();
    process.env.OLLAMA_HOST = '127.0.0.1:1'; // no Ollama: registration does not depend on it
    process.env.NVML_POLL_INTERVAL_MS = '50';
    process.env.OLLAMA_POLL_INTERVAL_MS = '1000';
    process.env.HOSTNAME_LABEL = 'gpu-node-7';
    process.env.REGISTRATION_TOKEN = TOKEN;
    process.env.OLLAMA_ADVERTISE_URL = 'http://10.1.2.3:11434';
    process.env.AGENT_ADVERTISE_URL = 'http://10.1.2.3:9400';
    process.env.OLLAMA_NUM_PARALLEL = '4';
    process.env.OLLAMA_MAX_LOADED_MODELS = '2';
    process.env.REGISTRATION_RETRY_MAX_MS = '100';
    process.env.REGISTRATION_TIMEOUT_MS = '2000';
    delete process.env.AGENT_TOKEN;
    delete process.env.PORT;
  });

  afterEach(async () => {
    while (apps.length) await apps.pop()!.close();
    while (stubs.length) await stubs.pop()!.close();
    resetNvmlAddon();
    for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
    Object.assign(process.env, savedEnv);
  });

  afterAll(() => {
    setNativeEnv('FAKE_NVML_STATE', undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  async function stub(port = 0): Promise<StubBalancer> {
    const s = await new StubBalancer().listen(port);
    stubs.push(s);
    return s;
  }

  async function boot(): Promise<{ app: INestApplication; base: string }> {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    apps.push(app);
    await app.listen(0, '127.0.0.1');
    return { app, base: `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}` };
  }

  async function registration(base: string) {
    const res = await fetch(`${base}/status`);
    const parsed = parseAgentStatus(await res.json());
    if (!parsed.ok) throw new Error(parsed.error);
    return parsed.value.registration!;
  }

  it('registers with every balancer, heartbeats at the interval answered, and deregisters on shutdown', async () => {
    const a = await stub();
    const b = await stub();
    process.env.BALANCER_URL = `${a.url}, ${b.url}/`;
    const { app } = await boot();

    // Three POSTs at each: the registration and two heartbeats (interval 30 ms, as answered).
    await waitFor('three registrations at each balancer', () => a.posts().length >= 3 && b.posts().length >= 3);
    for (const s of [a, b]) {
      for (const p of s.posts()) {
        expect(p.url).toBe(AGENT_REGISTRATION_PATH);
        expect(p.authorization).toBe(`Bearer ${TOKEN}`);
        const body = parseAgentRegistration(p.body);
        expect(body.ok).toBe(true);
        expect(p.body).toEqual({
          name: 'gpu-node-7',
          ollamaUrl: 'http://10.1.2.3:11434',
          agentUrl: 'http://10.1.2.3:9400',
          parallel: 4,
          maxLoadedModels: 2,
          agentVersion: expect.any(String),
        });
      }
    }

    await app.close();
    apps.length = 0;
    for (const s of [a, b]) {
      const last = s.seen[s.seen.length - 1];
      expect(last).toEqual({
        method: 'DELETE',
        url: `${AGENT_REGISTRATION_PATH}/gpu-node-7`,
        authorization: `Bearer ${TOKEN}`,
        body: undefined,
      });
      expect(s.seen.filter((x) => x.method === 'DELETE')).toHaveLength(1);
    }
    // Nothing after the DELETE: the heartbeat timers are gone.
    const counts = [a.seen.length, b.seen.length];
    await new Promise((r) => setTimeout(r, 200));
    expect([a.seen.length, b.seen.length]).toEqual(counts);
  });

  it('keeps serving while the balancer is down, backs off, and registers once it is up', async () => {
    const port = await freePort();
    process.env.BALANCER_URL = `http://127.0.0.1:${port}`;
    const { base } = await boot();

    const failing = await waitFor('a few failed attempts', async () => {
      const [link] = await registration(base);
      return link.failures >= 3 ? link : undefined;
    });
    expect(failing).toMatchObject({
      balancerUrl: `http://127.0.0.1:${port}`,
      state: 'retrying',
      lastError: 'ECONNREFUSED',
      lastAcceptedAt: null,
    });
    expect((await fetch(`${base}/health/live`)).status).toBe(200);

    const s = await stub(port);
    await waitFor('the registration', () => s.posts().length >= 1);
    const link = await waitFor('the registered state', async () => {
      const [l] = await registration(base);
      return l.state === 'registered' ? l : undefined;
    });
    expect(link).toMatchObject({
      state: 'registered',
      failures: 0,
      lastError: null,
      heartbeatIntervalMs: 30,
      ttlMs: 90,
    });
  });

  it('retries after 503 and after an answer that is not a registration, then registers', async () => {
    const s = await stub();
    let n = 0;
    s.answer = () => {
      n += 1;
      if (n === 1) return { status: 503, body: { error: 'draining' } };
      if (n === 2) return { status: 200, body: { hello: 'world' } };
      return { status: 200, body: { name: 'gpu-node-7', heartbeatIntervalMs: 30, ttlMs: 90 } };
    };
    process.env.BALANCER_URL = s.url;
    const { base } = await boot();
    await waitFor('the registered state', async () => (await registration(base))[0].state === 'registered');
    expect(n).toBeGreaterThanOrEqual(3);
  });

  it('a refused token: no crash, the reason in /status, tries again (and registers when the balancer accepts it)', async () => {
    const s = await stub();
    let accept = false;
    s.answer = () =>
      accept
        ? { status: 200, body: { name: 'gpu-node-7', heartbeatIntervalMs: 30, ttlMs: 90 } }
        : { status: 401, body: { error: 'invalid registration token' } };
    process.env.BALANCER_URL = s.url;
    const { base } = await boot();
    const [link] = await waitFor('a refusal', async () => {
      const l = await registration(base);
      return l[0].failures >= 2 ? l : undefined;
    });
    expect(link.state).toBe('retrying');
    expect(link.lastError).toBe(
      'the balancer refused the registration token (REGISTRATION_TOKEN) (HTTP 401): invalid registration token',
    );
    expect(JSON.stringify(await registration(base))).not.toContain(TOKEN);
    accept = true;
    await waitFor('the registered state', async () => (await registration(base))[0].state === 'registered');
  });

  it('no DELETE at shutdown to a balancer that never accepted the registration', async () => {
    const s = await stub();
    s.answer = () => ({ status: 404, body: { error: 'not found' } });
    process.env.BALANCER_URL = s.url;
    const { app } = await boot();
    await waitFor('an attempt', () => s.posts().length >= 1);
    await app.close();
    apps.length = 0;
    expect(s.seen.every((x) => x.method === 'POST')).toBe(true);
  });

  it('registration off without BALANCER_URL: /status says null and nothing is sent', async () => {
    delete process.env.BALANCER_URL;
    const { base } = await boot();
    const res = await fetch(`${base}/status`);
    expect(((await res.json()) as { registration: unknown }).registration).toBeNull();
  });
});

/** The agent as a process (ts-node over src/main.ts), as a container runs it. */
function spawnAgent(env: Record<string, string>) {
  const root = path.resolve(__dirname, '../../..');
  const proc = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', '-r', 'tsconfig-paths/register', 'apps/gpu-agent/src/main.ts'],
    {
      cwd: root,
      env: { ...process.env, TS_NODE_PROJECT: path.join(root, 'tsconfig.json'), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  proc.stdout.on('data', (c: Buffer) => (output += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, exited, output: () => output };
}

describe('gpu-agent process: registration at start, deregistration on SIGTERM', () => {
  const stubs: StubBalancer[] = [];
  afterEach(async () => {
    while (stubs.length) await stubs.pop()!.close();
  });

  it('SIGTERM sends the DELETE before the process ends', async () => {
    const s = await new StubBalancer().listen();
    stubs.push(s);
    s.answer = (req) =>
      req.method === 'DELETE'
        ? { status: 204 }
        : { status: 200, body: { name: 'edge-1', heartbeatIntervalMs: 50, ttlMs: 150 } };
    const agent = spawnAgent({
      PORT: String(await freePort()),
      OLLAMA_HOST: '127.0.0.1:1',
      NVML_LIBRARY_PATH: '/nonexistent/libnvidia-ml.so.1',
      BALANCER_URL: s.url,
      REGISTRATION_TOKEN: TOKEN,
      AGENT_NAME: 'edge-1',
      OLLAMA_ADVERTISE_URL: 'http://203.0.113.7:11434',
      AGENT_ADVERTISE_URL: 'http://203.0.113.7:9400',
      REGISTRATION_RETRY_MAX_MS: '200',
    });
    try {
      await waitFor('two registrations', () => s.posts().length >= 2, 60_000);
      agent.proc.kill('SIGTERM');
      const code = await agent.exited;
      expect(s.seen.filter((x) => x.method === 'DELETE').map((x) => x.url)).toEqual([
        `${AGENT_REGISTRATION_PATH}/edge-1`,
      ]);
      expect(code === 0 || code === null).toBe(true);
      expect(agent.output()).toContain('deregistered from');
      expect(agent.output()).not.toContain(TOKEN);
    } finally {
      agent.proc.kill('SIGKILL');
    }
  });

  it.each([
    [
      { BALANCER_URL: 'http://127.0.0.1:1' },
      'Invalid configuration: REGISTRATION_TOKEN="" must be set when BALANCER_URL is',
    ],
    [
      { BALANCER_URL: 'ftp://balancer', REGISTRATION_TOKEN: TOKEN },
      'Invalid configuration: BALANCER_URL="ftp://balancer" entries must use http:// or https://',
    ],
    [
      { BALANCER_URL: 'http://b:11434', REGISTRATION_TOKEN: 'short' },
      'Invalid configuration: REGISTRATION_TOKEN="<redacted>" must be at least 16 characters',
    ],
  ])('a bad setting (%j) stops start-up naming it', async (env, message) => {
    const agent = spawnAgent({
      PORT: String(await freePort()),
      OLLAMA_ADVERTISE_URL: 'http://10.0.0.1:11434',
      AGENT_ADVERTISE_URL: 'http://10.0.0.1:9400',
      ...env,
    });
    expect(await agent.exited).toBe(1);
    expect(agent.output()).toContain(message);
  });
});

describe('BalancerLink backoff', () => {
  const link = (retryMaxMs: number, random: () => number) =>
    new BalancerLink({
      balancerUrl: 'http://x',
      token: TOKEN,
      body: { name: 'n', ollamaUrl: 'http://x:1' },
      retryMaxMs,
      timeoutMs: 1000,
      log: () => undefined,
      random,
    });

  it('doubles from 1 s up to the cap, jittered between half and all of it', () => {
    const top = link(30_000, () => 1);
    expect([1, 2, 3, 4, 5, 6, 7, 50].map((n) => top.backoffMs(n))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000,
    ]);
    const bottom = link(30_000, () => 0);
    expect([1, 2, 6].map((n) => bottom.backoffMs(n))).toEqual([500, 1000, 15000]);
  });

  it('a cap below 1 s is the whole range', () => {
    expect(link(100, () => 1).backoffMs(1)).toBe(100);
    expect(link(100, () => 1).backoffMs(9)).toBe(100);
  });
});
