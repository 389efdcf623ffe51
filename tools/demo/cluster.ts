import { ChildProcess, spawn } from 'child_process';
import { mkdtempSync, writeFileSync } from 'fs';
import * as http from 'http';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import { fakeNvmlLibraryPath } from '@app/nvml/testing';
import { SimConfig, SimServer, startSimServer } from '@app/ollama-sim';

const GB = 1_000_000_000;
const GiB = 1024 ** 3;

/** The embedded default: three simulated GPU hosts of different speeds and models. */
export const DEMO_HOSTS: (SimConfig & { gpuName: string; gpuMemBytes: number; gpus: number })[] = [
  {
    name: 'gpu-fast',
    gpuName: 'NVIDIA H100 80GB HBM3',
    gpuMemBytes: 80 * GiB,
    gpus: 2,
    tokensPerSecond: 60,
    numParallel: 2,
    loadMsPerGB: 400,
    models: [
      { name: 'llama3.2:latest', sizeBytes: 2.0 * GB, family: 'llama', parameterSize: '3.2B', quantization: 'Q4_K_M' },
      { name: 'qwen2.5:7b', sizeBytes: 4.7 * GB, family: 'qwen2', parameterSize: '7.6B', quantization: 'Q4_K_M' },
      {
        name: 'nomic-embed-text:latest',
        sizeBytes: 0.27 * GB,
        family: 'nomic-bert',
        parameterSize: '137M',
        quantization: 'F16',
        embedding: true,
      },
    ],
    loaded: ['llama3.2:latest'],
  },
  {
    name: 'gpu-medium',
    gpuName: 'NVIDIA L40S',
    gpuMemBytes: 48 * GiB,
    gpus: 1,
    tokensPerSecond: 35,
    numParallel: 2,
    loadMsPerGB: 700,
    models: [
      { name: 'llama3.2:latest', sizeBytes: 2.0 * GB, family: 'llama', parameterSize: '3.2B', quantization: 'Q4_K_M' },
      { name: 'mistral:7b', sizeBytes: 4.1 * GB, family: 'llama', parameterSize: '7.2B', quantization: 'Q4_0' },
    ],
    loaded: ['mistral:7b'],
  },
  {
    name: 'gpu-slow',
    gpuName: 'NVIDIA RTX A4000',
    gpuMemBytes: 16 * GiB,
    gpus: 1,
    tokensPerSecond: 15,
    numParallel: 1,
    loadMsPerGB: 1200,
    maxLoadedModels: 1,
    models: [
      { name: 'llama3.2:latest', sizeBytes: 2.0 * GB, family: 'llama', parameterSize: '3.2B', quantization: 'Q4_K_M' },
      {
        name: 'nomic-embed-text:latest',
        sizeBytes: 0.27 * GB,
        family: 'nomic-bert',
        parameterSize: '137M',
        quantization: 'F16',
        embedding: true,
      },
    ],
    loaded: ['llama3.2:latest'],
  },
];

export interface DemoPorts {
  balancer: number;
  simBase: number;
  agentBase: number;
}

export interface DemoCluster {
  url: string;
  sims: SimServer[];
  children: ChildProcess[];
  stop(): Promise<void>;
}

function waitHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolvePromise, reject) => {
    const tryOnce = () => {
      const req = http.get(url, (res) => {
        res.resume();
        if (res.statusCode === 200) return resolvePromise();
        retry();
      });
      req.on('error', retry);
      req.setTimeout(1000, () => req.destroy());
    };
    const retry = () =>
      Date.now() > deadline
        ? reject(new Error(`${url} did not answer 200 within ${timeoutMs} ms`))
        : setTimeout(tryOnce, 150);
    tryOnce();
  });
}

/**
 * Starts the whole chain on fixed local ports: simulated Ollama servers (each writing its fake-NVML
 * state from its own load), a gpu-agent per server over the fake libnvidia-ml.so.1 (real addon), and
 * the balancer (the production entry) in front, polling the agents.
 */
export async function startDemoCluster(
  ports: DemoPorts,
  opts: { quiet?: boolean; env?: Record<string, string> } = {},
): Promise<DemoCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'ollama-balancer-demo-'));
  const root = resolve(__dirname, '..', '..', '..');
  const children: ChildProcess[] = [];
  const sims: SimServer[] = [];
  const stop = async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await Promise.all(
      children.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r)))),
    );
    await Promise.all(sims.map((s) => s.close()));
  };
  try {
    for (let i = 0; i < DEMO_HOSTS.length; i++) {
      const { gpuName, gpuMemBytes, gpus, ...sim } = DEMO_HOSTS[i];
      const statePath = join(dir, `${sim.name}.nvml`);
      sims.push(
        await startSimServer({
          ...sim,
          port: ports.simBase + i,
          nvml: {
            statePath,
            gpus: Array.from({ length: gpus }, (_, g) => ({
              name: gpuName,
              uuid: `GPU-demo${i}${g}-0000-4000-8000-${String(i * 10 + g).padStart(12, '0')}`,
              memTotalBytes: gpuMemBytes,
            })),
          },
        }),
      );
      const agent = spawn(process.execPath, [join(root, 'dist/apps/gpu-agent/src/main.js')], {
        env: {
          ...process.env,
          PORT: String(ports.agentBase + i),
          OLLAMA_HOST: `127.0.0.1:${ports.simBase + i}`,
          NVML_LIBRARY_PATH: fakeNvmlLibraryPath(),
          FAKE_NVML_STATE: statePath,
          NVML_POLL_INTERVAL_MS: '500',
          OLLAMA_POLL_INTERVAL_MS: '1000',
          HOSTNAME_LABEL: sim.name!,
          LOG_LEVEL: 'warn',
        },
        stdio: opts.quiet ? 'ignore' : ['ignore', 'ignore', 'inherit'],
      });
      children.push(agent);
    }
    const config = join(dir, 'balancer.json');
    writeFileSync(
      config,
      JSON.stringify(
        {
          backends: DEMO_HOSTS.map((h, i) => ({
            name: h.name,
            url: `http://127.0.0.1:${ports.simBase + i}`,
            parallel: h.numParallel,
            maxLoadedModels: h.maxLoadedModels ?? 0,
            agentUrl: `http://127.0.0.1:${ports.agentBase + i}`,
          })),
        },
        null,
        2,
      ),
    );
    const balancer = spawn(process.execPath, [join(root, 'dist/apps/balancer/src/main.js')], {
      env: {
        ...process.env,
        PORT: String(ports.balancer),
        HOST: '127.0.0.1',
        BALANCER_CONFIG: config,
        HEALTH_INTERVAL_MS: '2000',
        AGENT_INTERVAL_MS: '1000',
        INVENTORY_INTERVAL_MS: '5000',
        LOG_REQUESTS: opts.quiet ? 'false' : 'true',
        LOG_LEVEL: opts.quiet ? 'warn' : 'log',
        ...opts.env,
      },
      stdio: opts.quiet ? 'ignore' : ['ignore', 'inherit', 'inherit'],
    });
    children.push(balancer);
    const url = `http://127.0.0.1:${ports.balancer}`;
    await waitHttp(`${url}/health/ready`, 20_000);
    await Promise.all(
      DEMO_HOSTS.map((_, i) => waitHttp(`http://127.0.0.1:${ports.agentBase + i}/health/ready`, 20_000)),
    );
    return { url, sims, children, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
