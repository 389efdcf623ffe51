import { INestApplication } from '@nestjs/common';
import { mkdtempSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { writeFakeNvmlStateSync } from '@app/nvml/testing';
import { SimServer } from '@app/ollama-sim';
import {
  AgentProcess,
  getJson,
  request,
  startAgent,
  startBalancer,
  startSims,
  waitFor,
  writeConfigFile,
} from './harness';

const GiB = 1024 ** 3;
const gpu = (util: number) => ({
  name: 'NVIDIA H100 80GB HBM3',
  uuid: `GPU-${util}0000000-0000-4000-8000-000000000000`,
  utilGpu: util,
  utilMemory: Math.round(util / 2),
  memTotal: 80 * GiB,
  memUsed: 10 * GiB,
  temperature: 40 + util / 3,
  powerUsage: 100_000 + util * 5000,
  powerLimit: 700_000,
});

/**
 * The whole chain with real processes: fake-NVML state file -> fake libnvidia-ml.so.1 -> our addon
 * -> gpu-agent -> balancer -> routing. Two backends with equal in-flight: one GPU reads 10 % busy,
 * the other 95 %. Then the idle one's agent stops: its reading goes stale and stops counting.
 */
describe('GPU-aware routing through real gpu-agents', () => {
  let dir: string;
  let sims: SimServer[] = [];
  const agents: AgentProcess[] = [];
  let app: INestApplication | undefined;
  let url: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gpu-routing-'));
    sims = await startSims([
      { tokensPerSecond: 2000, loaded: ['llama3.2:latest'] },
      { tokensPerSecond: 2000, loaded: ['llama3.2:latest'] },
    ]);
    const states = [join(dir, 'idle.state'), join(dir, 'busy.state')];
    writeFakeNvmlStateSync(states[0], { gpus: [gpu(10)] });
    writeFakeNvmlStateSync(states[1], { gpus: [gpu(95)] });
    for (let i = 0; i < 2; i++) agents.push(await startAgent(`node-${i}`, states[i], sims[i].url));
    const file = writeConfigFile({
      backends: sims.map((s, i) => ({ name: i === 0 ? 'idle' : 'busy', url: s.url, agentUrl: agents[i].url })),
    });
    ({ app, url } = await startBalancer({
      BALANCER_CONFIG: file,
      ROUTING_POLICY: 'least-loaded',
      AGENT_STALE_MS: '1500',
    }));
    await waitFor(
      async () =>
        (await getJson(`${url}/balancer/status`)).body.backends.every(
          (b: any) => b.agent?.fresh && b.health === 'healthy',
        ),
      30_000,
      'fresh agent readings',
    );
  }, 90_000);

  afterAll(async () => {
    await app?.close();
    for (const a of agents) if (a.proc.exitCode === null) a.proc.kill('SIGKILL');
    await Promise.all(sims.map((s) => s.close()));
  });

  it('shows each GPU reading in the status and routes to the idle GPU at equal in-flight', async () => {
    const st = (await getJson(`${url}/balancer/status`)).body;
    expect(st.backends[0].agent.host.meanUtilizationGpu).toBe(10);
    expect(st.backends[1].agent.host.meanUtilizationGpu).toBe(95);
    expect(st.backends[0].agent.gpus[0].name).toBe('NVIDIA H100 80GB HBM3');
    for (let i = 0; i < 6; i++) {
      const r = await request(`${url}/api/generate`, { body: { model: 'llama3.2', prompt: `p${i}`, stream: false } });
      expect(r.status).toBe(200);
      expect(r.headers['x-balancer-backend']).toBe('idle');
    }
  });

  it('stops trusting a reading once its agent goes quiet (unknown, never idle)', async () => {
    // The busy GPU calms to 30 %; the idle one's agent dies with its last reading at 10 %.
    writeFakeNvmlStateSync(join(dir, 'busy.state'), { gpus: [gpu(30)] });
    agents[0].proc.kill('SIGKILL');
    await waitFor(
      async () => {
        const b = (await getJson(`${url}/balancer/status`)).body.backends;
        return b[0].agent.fresh === false && b[1].agent.fresh === true && b[1].agent.host.meanUtilizationGpu === 30;
      },
      20_000,
      'idle agent stale, busy agent at 30 %',
    );
    // A stale 10 % would still win; as unknown (counted half busy) it loses to a known 30 %.
    for (let i = 0; i < 4; i++) {
      const r = await request(`${url}/api/generate`, { body: { model: 'llama3.2', prompt: `q${i}`, stream: false } });
      expect(r.headers['x-balancer-backend']).toBe('busy');
    }
    // The Ollama server itself stays healthy: a quiet agent never ejects it.
    const st = (await getJson(`${url}/balancer/status`)).body.backends[0];
    expect(st.health).toBe('healthy');
    expect(st.available).toBe(true);
  });
});

describe('an agent payload that fails DTO validation', () => {
  it('is rejected and reported, never trusted for routing', async () => {
    const http = await import('http');
    const bogus = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      // utilization as a string and no host aggregates: not an AgentStatusDto.
      res.end(
        JSON.stringify({
          hostname: 'x',
          agentVersion: '1',
          collectedAt: new Date().toISOString(),
          readingAgeMs: 0,
          nvml: { available: true, error: null },
          gpus: [{ index: 0, name: 'g', uuid: 'u', utilizationGpu: 'idle', processes: [] }],
        }),
      );
    });
    await new Promise<void>((r) => bogus.listen(0, '127.0.0.1', r));
    const [sim] = await startSims([{ tokensPerSecond: 2000 }]);
    const port = (bogus.address() as import('net').AddressInfo).port;
    const file = writeConfigFile({ backends: [{ name: 'b1', url: sim.url, agentUrl: `http://127.0.0.1:${port}` }] });
    const { app, url } = await startBalancer({ BALANCER_CONFIG: file });
    try {
      await waitFor(
        async () => (await getJson(`${url}/balancer/status`)).body.backends[0].agent?.error !== null,
        10_000,
        'agent error reported',
      );
      const b = (await getJson(`${url}/balancer/status`)).body.backends[0];
      expect(b.agent.error).toMatch(/invalid agent payload/);
      expect(b.agent.fresh).toBe(false);
      expect(b.agent.host).toBeNull();
      expect(
        (await request(`${url}/api/generate`, { body: { model: 'llama3.2', prompt: 'x', stream: false } })).status,
      ).toBe(200);
    } finally {
      await app.close();
      await sim.close();
      bogus.close();
    }
  });
});
