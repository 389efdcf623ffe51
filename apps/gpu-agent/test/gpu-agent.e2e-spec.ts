/**
 * Boots the real gpu-agent (AppModule, real sockets) over the fake libnvidia-ml.so.1 and a tiny fake
 * Ollama, and checks what a scraper and the balancer would see.
 */
import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { parseAgentStatus } from '@app/common';
import {
  FakeNvmlState,
  fakeNvmlLibraryPath,
  resetNvmlAddon,
  setNativeEnv,
  writeFakeNvmlStateSync,
} from '@app/nvml/testing';
import { AppModule } from '../src/app.module';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function twoGpus(): FakeNvmlState {
  return {
    driverVersion: '550.54.15',
    nvmlVersion: '12.550.54.15',
    gpus: [
      {
        name: 'NVIDIA H100 80GB HBM3',
        uuid: 'GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52',
        pciBusId: '00000000:01:00.0',
        utilGpu: 37,
        utilMemory: 12,
        memTotal: 80 * GiB,
        memUsed: 20 * GiB,
        memReserved: 512 * MiB,
        temperature: 51,
        powerUsage: 312_500,
        powerLimit: 700_000,
        fanSpeed: 40,
        clockSm: 1980,
        clockMem: 2619,
        processes: [{ pid: 4242, usedMemory: 12 * GiB }],
      },
      {
        name: 'NVIDIA L40S',
        uuid: 'GPU-11111111-2222-3333-4444-555555555555',
        pciBusId: '00000000:41:00.0',
        utilGpu: 3,
        utilMemory: 1,
        memTotal: 48 * GiB,
        memUsed: 1 * GiB,
        memReserved: 0,
        temperature: 63,
        powerUsage: 81_000,
        powerLimit: 350_000,
        clockSm: 2520,
        clockMem: 9001,
        processes: [],
      },
    ],
  };
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Minimal Prometheus text-format parser: enough to fail on malformed lines. */
function parsePrometheus(text: string): { samples: Sample[]; types: Record<string, string> } {
  const samples: Sample[] = [];
  const types: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types[name] = type;
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { samples, types };
}

function sample(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('gpu-agent over the fake NVML library and a fake Ollama', () => {
  let dir: string;
  let statePath: string;
  let ollama: Server;
  let ollamaPort: number;
  let ollamaPs: unknown[];
  const apps: INestApplication[] = [];
  const savedEnv = { ...process.env };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gpu-agent-e2e-'));
    statePath = path.join(dir, 'state');
    setNativeEnv('FAKE_NVML_STATE', statePath);
    ollamaPs = [
      {
        name: 'llama3.2:latest',
        model: 'llama3.2:latest',
        size: 3_400_000_000,
        digest: 'a80c4f17acd5',
        details: { family: 'llama' },
        expires_at: '2030-01-01T00:05:00Z',
        size_vram: 3_000_000_000,
        context_length: 4096,
      },
    ];
    ollama = createServer((req, res) => {
      const body =
        req.url === '/api/ps'
          ? { models: ollamaPs }
          : req.url === '/api/tags'
            ? {
                models: [
                  { name: 'llama3.2:latest', model: 'llama3.2:latest', size: 2_019_393_189, digest: 'a80c4f17acd5' },
                ],
              }
            : null;
      res.writeHead(body ? 200 : 404, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(body ?? { error: 'not found' }));
    });
    await new Promise<void>((r) => ollama.listen(0, '127.0.0.1', r));
    ollamaPort = (ollama.address() as AddressInfo).port;
  });

  beforeEach(() => {
    writeFakeNvmlStateSync(statePath, twoGpus());
    process.env.NVML_LIBRARY_PATH = fakeNvmlLibraryPath();
    process.env.OLLAMA_HOST = `127.0.0.1:${ollamaPort}`;
    process.env.NVML_POLL_INTERVAL_MS = '50';
    process.env.OLLAMA_POLL_INTERVAL_MS = '50';
    process.env.HOSTNAME_LABEL = 'gpu-node-7';
    delete process.env.AGENT_TOKEN;
    delete process.env.PORT;
  });

  afterEach(async () => {
    while (apps.length) await apps.pop()!.close();
    resetNvmlAddon();
    for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
    Object.assign(process.env, savedEnv);
  });

  afterAll(async () => {
    await new Promise((r) => ollama.close(r));
    setNativeEnv('FAKE_NVML_STATE', undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  async function boot(): Promise<string> {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    apps.push(app);
    await app.listen(0, '127.0.0.1');
    return `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  }

  async function json(url: string, init?: RequestInit): Promise<{ status: number; body: any }> {
    const res = await fetch(url, init);
    return { status: res.status, body: await res.json() };
  }

  async function readyStatus(base: string) {
    return waitFor('an NVML reading and an Ollama check', async () => {
      const { body } = await json(`${base}/status`);
      return body.nvml.available && body.ollama.reachable && body.gpus.length > 0 ? body : undefined;
    });
  }

  it('GET /metrics is Prometheus text with dcgm-exporter names, labels, units and values', async () => {
    const base = await boot();
    await readyStatus(base);
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain;.*version=0\.0\.4/);
    const { samples, types } = parsePrometheus(await res.text());
    const s = twoGpus();
    s.gpus.forEach((g, i) => {
      const labels = {
        gpu: String(i),
        UUID: g.uuid,
        pci_bus_id: g.pciBusId!,
        device: `nvidia${i}`,
        modelName: g.name,
        Hostname: 'gpu-node-7',
      };
      expect(sample(samples, 'DCGM_FI_DEV_GPU_UTIL', labels)).toBe(g.utilGpu);
      expect(sample(samples, 'DCGM_FI_DEV_MEM_COPY_UTIL', labels)).toBe(g.utilMemory);
      expect(sample(samples, 'DCGM_FI_DEV_FB_USED', labels)).toBe(Math.floor(g.memUsed / MiB));
      expect(sample(samples, 'DCGM_FI_DEV_FB_RESERVED', labels)).toBe(Math.floor((g.memReserved ?? 0) / MiB));
      expect(sample(samples, 'DCGM_FI_DEV_FB_FREE', labels)).toBe(
        Math.floor((g.memTotal - g.memUsed - (g.memReserved ?? 0)) / MiB),
      );
      expect(sample(samples, 'DCGM_FI_DEV_GPU_TEMP', labels)).toBe(g.temperature);
      expect(sample(samples, 'DCGM_FI_DEV_POWER_USAGE', labels)).toBe(g.powerUsage / 1000);
      expect(sample(samples, 'DCGM_FI_DEV_SM_CLOCK', labels)).toBe(g.clockSm);
      expect(sample(samples, 'DCGM_FI_DEV_MEM_CLOCK', labels)).toBe(g.clockMem);
    });
    expect(sample(samples, 'DCGM_FI_DEV_FB_USED', { gpu: '0' })).toBe(20480);
    expect(sample(samples, 'DCGM_FI_DEV_POWER_USAGE', { gpu: '0' })).toBe(312.5);
    // The L40S in the state file has no fan reading: NOT_SUPPORTED means no sample, not 0.
    expect(sample(samples, 'DCGM_FI_DEV_FAN_SPEED', { gpu: '0' })).toBe(40);
    expect(sample(samples, 'DCGM_FI_DEV_FAN_SPEED', { gpu: '1' })).toBeUndefined();
    expect(types.DCGM_FI_DEV_GPU_UTIL).toBe('gauge');
    expect(sample(samples, 'gpu_agent_nvml_up')).toBe(1);
    expect(sample(samples, 'gpu_agent_gpu_count')).toBe(2);
    expect(sample(samples, 'ollama_up')).toBe(1);
    expect(sample(samples, 'ollama_model_loaded', { model: 'llama3.2:latest' })).toBe(1);
    expect(sample(samples, 'ollama_model_vram_bytes', { model: 'llama3.2:latest' })).toBe(3_000_000_000);
  });

  it('GET /status validates with parseAgentStatus and matches the state file and Ollama', async () => {
    const base = await boot();
    const body = await readyStatus(base);
    const parsed = parseAgentStatus(body);
    if (!parsed.ok) throw new Error(parsed.error);
    const st = parsed.value;
    const s = twoGpus();
    expect(st.hostname).toBe('gpu-node-7');
    expect(st.nvml).toMatchObject({
      available: true,
      error: null,
      driverVersion: '550.54.15',
      nvmlVersion: '12.550.54.15',
    });
    expect(new Date(st.collectedAt).getTime()).toBeLessThanOrEqual(Date.now());
    expect(st.readingAgeMs).toBeGreaterThanOrEqual(0);
    expect(st.gpus).toHaveLength(2);
    expect(st.gpus[0]).toMatchObject({
      index: 0,
      name: s.gpus[0].name,
      uuid: s.gpus[0].uuid,
      pciBusId: s.gpus[0].pciBusId,
      utilizationGpu: 37,
      utilizationMemory: 12,
      memoryTotalBytes: 80 * GiB,
      memoryUsedBytes: 20 * GiB,
      memoryReservedBytes: 512 * MiB,
      memoryFreeBytes: 80 * GiB - 20 * GiB - 512 * MiB,
      temperatureC: 51,
      powerUsageW: 312.5,
      powerLimitW: 700,
      fanSpeedPercent: 40,
      smClockMhz: 1980,
      memClockMhz: 2619,
      processes: [{ pid: 4242, usedMemoryBytes: 12 * GiB }],
      error: null,
    });
    expect(body.gpus[1]).not.toHaveProperty('fanSpeedPercent'); // NOT_SUPPORTED: absent, not 0
    expect(st.gpus[1].fanSpeedPercent).toBeUndefined();
    expect(st.host).toEqual({
      gpuCount: 2,
      meanUtilizationGpu: 20,
      memoryTotalBytes: 128 * GiB,
      memoryUsedBytes: 21 * GiB,
      memoryFreeBytes: 128 * GiB - 21 * GiB - 512 * MiB,
      hottestGpu: { index: 1, temperatureC: 63 },
      leastLoadedGpu: 0, // 59.5 GiB free beats 47 GiB
    });
    expect(st.ollama).toMatchObject({ url: `http://127.0.0.1:${ollamaPort}`, reachable: true, error: null });
    expect(st.ollama.loaded).toEqual([
      {
        name: 'llama3.2:latest',
        model: 'llama3.2:latest',
        size: 3_400_000_000,
        sizeVram: 3_000_000_000,
        expiresAt: '2030-01-01T00:05:00Z',
        digest: 'a80c4f17acd5',
      },
    ]);
    expect(st.ollama.models).toEqual([{ name: 'llama3.2:latest', size: 2_019_393_189 }]);
  });

  it('a changed state file (and Ollama state) changes the readings', async () => {
    const base = await boot();
    await readyStatus(base);
    const next = twoGpus();
    next.gpus[1].utilGpu = 95;
    next.gpus[1].memUsed = 40 * GiB;
    next.gpus[0].temperature = 80;
    writeFakeNvmlStateSync(statePath, next);
    ollamaPs = [];
    const body = await waitFor('the new readings', async () => {
      const { body } = await json(`${base}/status`);
      return body.gpus[1]?.utilizationGpu === 95 && body.ollama.loaded.length === 0 ? body : undefined;
    });
    expect(body.gpus[1].memoryUsedBytes).toBe(40 * GiB);
    expect(body.host.hottestGpu).toEqual({ index: 0, temperatureC: 80 });
    const { samples } = parsePrometheus(await (await fetch(`${base}/metrics`)).text());
    expect(sample(samples, 'DCGM_FI_DEV_GPU_UTIL', { gpu: '1' })).toBe(95);
    expect(sample(samples, 'ollama_model_loaded')).toBeUndefined();
  });

  it('readiness is 503 while NVML fails (nvmlInit_v2=9) and 200 once it works; liveness stays 200', async () => {
    writeFakeNvmlStateSync(statePath, { ...twoGpus(), errors: { nvmlInit_v2: 9 } });
    const base = await boot();
    const failing = await waitFor('an NVML failure', async () => {
      const { body } = await json(`${base}/status`);
      return body.nvml.code ? body : undefined;
    });
    expect(failing.nvml).toMatchObject({
      available: false,
      code: 'NVML_ERROR_DRIVER_NOT_LOADED',
      nvmlReturn: 9,
      error: 'nvmlInit_v2 failed: Driver Not Loaded',
    });
    expect(failing.gpus).toEqual([]);
    expect(parseAgentStatus(failing).ok).toBe(true);
    const ready = await json(`${base}/health/ready`);
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({
      status: 'error',
      error: { nvml: { status: 'down', code: 'NVML_ERROR_DRIVER_NOT_LOADED' } },
    });
    expect((await json(`${base}/health/live`)).status).toBe(200);
    const { samples } = parsePrometheus(await (await fetch(`${base}/metrics`)).text());
    expect(sample(samples, 'gpu_agent_nvml_up')).toBe(0);
    expect(samples.some((s) => s.name.startsWith('DCGM_'))).toBe(false);

    writeFakeNvmlStateSync(statePath, twoGpus());
    const ok = await waitFor('readiness', async () => {
      const r = await json(`${base}/health/ready`);
      return r.status === 200 ? r : undefined;
    });
    expect(ok.body).toMatchObject({ status: 'ok', info: { nvml: { status: 'up', gpuCount: 2 } } });
  });

  it('a per-GPU failure marks that GPU and keeps the agent ready', async () => {
    writeFakeNvmlStateSync(statePath, { ...twoGpus(), errors: { 'nvmlDeviceGetTemperature.1': 15 } });
    const base = await boot();
    const body = await waitFor('GPU 1 marked', async () => {
      const { body } = await json(`${base}/status`);
      return body.gpus[1]?.errorCode ? body : undefined;
    });
    expect(body.gpus[1].errorCode).toBe('NVML_ERROR_GPU_IS_LOST');
    expect(body.gpus[1].error).toMatch(/GPU is lost/);
    expect(body.gpus[0].error).toBeNull();
    expect(body.host.leastLoadedGpu).toBe(0);
    expect((await json(`${base}/health/ready`)).status).toBe(200);
    const { samples } = parsePrometheus(await (await fetch(`${base}/metrics`)).text());
    expect(sample(samples, 'gpu_agent_gpu_error', { gpu: '1', code: 'NVML_ERROR_GPU_IS_LOST' })).toBe(15);
  });

  it('NVML_LIBRARY_PATH pointing nowhere is reported, not fatal; Ollama unreachable is reported too', async () => {
    process.env.NVML_LIBRARY_PATH = path.join(dir, 'nope', 'libnvidia-ml.so.1');
    process.env.OLLAMA_HOST = 'http://127.0.0.1:9'; // discard port: nothing listens
    const base = await boot();
    const body = await waitFor('both failures', async () => {
      const { body } = await json(`${base}/status`);
      return body.nvml.code && body.ollama.checkedAt ? body : undefined;
    });
    expect(body.nvml).toMatchObject({ available: false, code: 'NVML_ERROR_LIBRARY_NOT_FOUND', nvmlReturn: 12 });
    expect(body.ollama).toMatchObject({ reachable: false, url: 'http://127.0.0.1:9', loaded: [] });
    expect(body.ollama.error).toEqual(expect.any(String));
    expect(parseAgentStatus(body).ok).toBe(true);
    expect((await json(`${base}/health/ready`)).status).toBe(503);
  });

  it('AGENT_TOKEN guards /status and /metrics; the health probes stay open', async () => {
    process.env.AGENT_TOKEN = 's3cret-token-123';
    const base = await boot();
    for (const p of ['/status', '/metrics']) {
      expect((await fetch(`${base}${p}`)).status).toBe(401);
      expect((await fetch(`${base}${p}`, { headers: { authorization: 'Bearer wrong-token-xyz' } })).status).toBe(401);
      expect((await fetch(`${base}${p}`, { headers: { authorization: 's3cret-token-123' } })).status).toBe(401);
      expect((await fetch(`${base}${p}`, { headers: { authorization: 'Bearer s3cret-token-123' } })).status).toBe(200);
    }
    expect((await fetch(`${base}/health/live`)).status).toBe(200);
    await waitFor('readiness without a token', async () => (await fetch(`${base}/health/ready`)).status === 200);
  });

  it.each([
    ['NVML_POLL_INTERVAL_MS', 'abc', 'Invalid configuration: NVML_POLL_INTERVAL_MS="abc" must be a positive integer'],
    ['OLLAMA_POLL_INTERVAL_MS', '0', 'Invalid configuration: OLLAMA_POLL_INTERVAL_MS="0" must be a positive integer'],
    ['PORT', '70000', 'Invalid configuration: PORT="70000" must be an integer from 0 to 65535'],
    ['OLLAMA_HOST', 'localhost:99999', 'Invalid configuration: OLLAMA_HOST="localhost:99999" has an invalid port'],
  ])('a bad %s=%s stops start-up with a message naming it', async (name, value, message) => {
    process.env[name] = value;
    await expect(Test.createTestingModule({ imports: [AppModule] }).compile()).rejects.toThrow(message);
  });
});
