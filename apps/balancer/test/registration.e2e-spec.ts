import { INestApplication } from '@nestjs/common';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { AGENT_REGISTRATION_PATH } from '@app/common';
import { writeFakeNvmlStateSync } from '@app/nvml/testing';
import { SimServer } from '@app/ollama-sim';
import {
  AgentProcess,
  getJson,
  parseStream,
  request,
  startAgent,
  startBalancer,
  startSims,
  streamTimed,
  waitFor,
  waitIdle,
  writeConfigFile,
} from './harness';

/**
 * Agent registration, end to end: the real balancer with REGISTRATION_TOKEN, real gpu-agent
 * processes (over the fake NVML library) that register their simulated Ollama servers, heartbeat,
 * and deregister on SIGTERM; and the endpoint's refusals, each in Ollama's error shape.
 */
const model = 'llama3.2';
const TOKEN = 'registration-token-for-tests-0123';
const ADMIN = 'admin-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };
const oneGpu = {
  driverVersion: '550.54.15',
  nvmlVersion: '12.550.54.15',
  gpus: [
    {
      name: 'NVIDIA L4',
      uuid: 'GPU-reg-1',
      pciBusId: '00000000:01:00.0',
      utilGpu: 5,
      utilMemory: 2,
      memTotal: 24e9,
      memUsed: 2e9,
      temperature: 41,
      powerUsage: 20_000,
      powerLimit: 72_000,
      processes: [],
    },
  ],
};

describe('agent registration', () => {
  let sims: SimServer[] = [];
  let dir: string;
  let app: INestApplication | undefined;
  let url = '';
  const agents: AgentProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'registration-e2e-'));
    sims = await startSims([
      { tokensPerSecond: 20, numParallel: 4, loaded: [model] },
      { tokensPerSecond: 20, numParallel: 4, loaded: [model] },
      { tokensPerSecond: 20, numParallel: 4, loaded: [model] },
    ]);
  });

  afterEach(async () => {
    for (const a of agents.splice(0))
      if (a.proc.exitCode === null && a.proc.signalCode === null) a.proc.kill('SIGKILL');
    await app?.close();
    app = undefined;
  });

  afterAll(async () => {
    await Promise.all(sims.map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function boot(env: Record<string, string> = {}): Promise<void> {
    ({ app, url } = await startBalancer({
      REGISTRATION_TOKEN: TOKEN,
      REGISTRATION_TTL_MS: '600',
      ADMIN_TOKEN: ADMIN,
      ...env,
    }));
  }

  const admin = { authorization: `Bearer ${ADMIN}` };
  const statusBody = async () => (await getJson(`${url}/balancer/status`, admin)).body;
  const backends = async () =>
    (await statusBody()).backends as {
      name: string;
      source: string;
      health: string;
      retiring: string | null;
      url: string;
      parallel: number;
      agent: { url: string; fresh: boolean; gpus: unknown[] } | null;
    }[];
  const backend = async (name: string) => (await backends()).find((b) => b.name === name);
  const register = (body: unknown, headers: Record<string, string> = auth) =>
    request(`${url}${AGENT_REGISTRATION_PATH}`, { body, headers });

  async function agentFor(name: string, sim: SimServer): Promise<AgentProcess> {
    const statePath = path.join(dir, `${name}.state`);
    writeFakeNvmlStateSync(statePath, oneGpu);
    const a = await startAgent(name, statePath, sim.url, {
      BALANCER_URL: url,
      REGISTRATION_TOKEN: TOKEN,
      AGENT_NAME: name,
      OLLAMA_ADVERTISE_URL: sim.url,
      OLLAMA_NUM_PARALLEL: '3',
      REGISTRATION_RETRY_MAX_MS: '200',
    });
    agents.push(a);
    return a;
  }

  it('a gpu-agent registers its server: a backend with its GPU view, serving; SIGTERM drains it', async () => {
    await boot();
    const a = await agentFor('gpu-a', sims[0]);
    await agentFor('gpu-b', sims[1]);
    await waitFor(
      async () => {
        const b = await backends();
        return b.length === 2 && b.every((x) => x.health === 'healthy' && x.agent?.fresh);
      },
      30_000,
      'both registered backends healthy with fresh GPU readings',
    );
    const gpuA = (await backend('gpu-a'))!;
    expect(gpuA).toMatchObject({
      source: 'registered',
      retiring: null,
      url: sims[0].url,
      parallel: 3,
      agent: { url: a.url },
    });
    expect(gpuA.agent!.gpus.length).toBeGreaterThan(0);

    const served = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const r = await request(`${url}/api/generate`, {
        body: { model, prompt: `p${i}`, stream: false, options: { num_predict: 2 } },
      });
      expect(r.status).toBe(200);
      served.add(String(r.headers['x-balancer-backend']));
    }
    expect([...served].every((n) => n === 'gpu-a' || n === 'gpu-b')).toBe(true);

    // A stream on gpu-a, then its agent gets SIGTERM: it deregisters, the backend drains.
    expect(
      (
        await request(`${url}/balancer/admin/backends/gpu-b/cordon`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN}` },
        })
      ).status,
    ).toBe(200);
    let first = false;
    const stream = streamTimed(
      `${url}/api/generate`,
      { model, prompt: 'long', options: { num_predict: 30 } },
      () => (first = true),
    );
    await waitFor(() => first, 15_000, 'stream under way');
    a.proc.kill('SIGTERM');
    await waitFor(
      async () => (await backend('gpu-a'))?.retiring !== null,
      10_000,
      'gpu-a retiring after its agent deregistered',
    );
    const s = await stream;
    expect(s.status).toBe(200);
    expect(s.headers['x-balancer-backend']).toBe('gpu-a');
    const objs = parseStream(s.chunks.map((c) => c.text).join(''));
    expect(objs[objs.length - 1]).toMatchObject({ done: true });
    await waitFor(async () => (await backend('gpu-a')) === undefined, 10_000, 'gpu-a removed once drained');
    expect(await backend('gpu-b')).toMatchObject({ retiring: null });
    await waitIdle(url, 10_000, admin);
  });

  it('an agent that stops heartbeating is dropped after the TTL (drained), and comes back when it registers again', async () => {
    await boot();
    const r = await register({ name: 'edge-1', ollamaUrl: sims[2].url });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ name: 'edge-1', heartbeatIntervalMs: 200, ttlMs: 600 });
    await waitFor(async () => (await backend('edge-1'))?.health === 'healthy', 10_000, 'edge-1 healthy');
    // No heartbeat: within the TTL plus a sweep it retires, and being idle it is removed.
    await waitFor(async () => (await backend('edge-1')) === undefined, 10_000, 'edge-1 dropped');
    const events = (await statusBody()).events as { backend: string; event: string; detail: string }[];
    expect(events.find((e) => e.backend === 'edge-1' && e.event === 'retiring')?.detail).toBe(
      'no heartbeat from its agent',
    );
    expect((await register({ name: 'edge-1', ollamaUrl: sims[2].url })).status).toBe(200);
    await waitFor(async () => (await backend('edge-1'))?.retiring === null, 10_000, 'edge-1 back');
  });

  it("refuses, in Ollama's error shape: no token, a wrong one, a bad body, a taken name or URL, one too many", async () => {
    await boot({
      BALANCER_CONFIG: writeConfigFile({ backends: [{ name: 'static-1', url: sims[0].url }] }),
      REGISTRATION_MAX_BACKENDS: '2',
      REGISTRATION_TTL_MS: '60000',
    });
    const ok = { name: 'gpu-x', ollamaUrl: sims[1].url, agentUrl: 'http://127.0.0.1:9' };

    const none = await register(ok, {});
    expect(none.status).toBe(401);
    expect(none.body).toEqual({ error: 'registration token required: Authorization: Bearer <REGISTRATION_TOKEN>' });
    expect((await register(ok, { authorization: `Bearer ${TOKEN}x` })).status).toBe(401);
    // The admin token is not a registration token.
    expect((await register(ok, { authorization: `Bearer ${ADMIN}` })).status).toBe(401);

    const bad = await register({ ...ok, ollamaUrl: 'http://10.0.0.1:11434/api', extra: 1 });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toContain('ollamaUrl must not have a path');
    expect(bad.body.error).toContain('property extra should not exist');
    expect((await register('not json at all')).status).toBe(400);

    expect((await register(ok)).status).toBe(200);
    expect((await register(ok)).status).toBe(200); // a heartbeat
    const moved = await register({ ...ok, ollamaUrl: sims[2].url });
    expect(moved.status).toBe(409);
    expect(moved.body.error).toMatch(/^backend name 'gpu-x' is registered with other URLs/);
    const sameServer = await register({ name: 'gpu-y', ollamaUrl: sims[1].url });
    expect(sameServer).toMatchObject({ status: 409, body: { error: `${sims[1].url} is already the backend 'gpu-x'` } });
    const configured = await register({ name: 'gpu-z', ollamaUrl: sims[0].url });
    expect(configured).toMatchObject({
      status: 409,
      body: { error: `${sims[0].url} is already the backend 'static-1'` },
    });
    const configuredName = await register({ name: 'static-1', ollamaUrl: sims[2].url });
    expect(configuredName).toMatchObject({
      status: 409,
      body: { error: "backend name 'static-1' is taken by a configured backend" },
    });

    expect((await register({ name: 'gpu-w', ollamaUrl: sims[2].url })).status).toBe(200);
    const full = await register({ name: 'gpu-v', ollamaUrl: 'http://127.0.0.1:1' });
    expect(full).toMatchObject({
      status: 429,
      body: { error: '2 backends are registered already (REGISTRATION_MAX_BACKENDS)' },
    });

    // DELETE: only registered backends; a configured one stays.
    const del = await request(`${url}${AGENT_REGISTRATION_PATH}/static-1`, { method: 'DELETE', headers: auth });
    expect(del.status).toBe(204);
    expect((await backend('static-1'))?.retiring).toBeNull();
    expect((await request(`${url}${AGENT_REGISTRATION_PATH}/gpu-x`, { method: 'DELETE', headers: {} })).status).toBe(
      401,
    );
    expect((await request(`${url}${AGENT_REGISTRATION_PATH}/gpu-x`, { method: 'DELETE', headers: auth })).status).toBe(
      204,
    );
    await waitFor(async () => (await backend('gpu-x')) === undefined, 10_000, 'gpu-x gone');
    expect((await request(`${url}${AGENT_REGISTRATION_PATH}/nobody`, { method: 'DELETE', headers: auth })).status).toBe(
      204,
    );
    // Its name is free again, with other URLs.
    expect((await register({ name: 'gpu-x', ollamaUrl: 'http://127.0.0.1:2' })).status).toBe(200);
  });

  it('without REGISTRATION_TOKEN the endpoint is off (404), and the setting is checked at start', async () => {
    ({ app, url } = await startBalancer({ ADMIN_TOKEN: ADMIN }));
    const r = await register({ name: 'gpu-x', ollamaUrl: sims[1].url });
    expect(r).toMatchObject({
      status: 404,
      body: { error: 'agent registration is off on this balancer (no REGISTRATION_TOKEN)' },
    });
    expect((await backends()).length).toBe(0);
    const { loadBalancerConfig } = await import('../src/config/balancer-config');
    expect(() => loadBalancerConfig({ REGISTRATION_TOKEN: 'short' })).toThrow(
      'Invalid configuration: REGISTRATION_TOKEN="<redacted>" must be at least 16 characters',
    );
    expect(() => loadBalancerConfig({ REGISTRATION_TOKEN: TOKEN, REGISTRATION_TTL_MS: '100' })).toThrow(
      'REGISTRATION_TTL_MS="100"',
    );
    expect(() => loadBalancerConfig({ REGISTRATION_TOKEN: TOKEN, REGISTRATION_MAX_BACKENDS: '0' })).toThrow(
      'REGISTRATION_MAX_BACKENDS="0"',
    );
  });
});
