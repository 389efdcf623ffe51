import { createWriteStream, existsSync, mkdirSync } from 'fs';
import { join, resolve } from 'path';
import type { LoadGenName } from './loadgen';
import { Child, startChild, waitFor } from './procs';

export interface BenchContext {
  root: string;
  tmp: string;
  smoke: boolean;
  loadGen: LoadGenName;
  hasNginx: boolean;
  hasHaproxy: boolean;
  /** Start apps/gpu-agent beside each simulator (over the fake NVML library) and give the balancer its agentUrl. */
  agents: boolean;
  log: (msg: string) => void;
}

/** Repository root when running from dist/tools/bench or tools/bench (ts-node). */
export function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'nest-cli.json'))) return dir;
    dir = resolve(dir, '..');
  }
  return process.cwd();
}

export const simCli = (root: string): string => join(root, 'dist/libs/ollama-sim/src/cli.js');
export const balancerMain = (root: string): string => join(root, 'dist/apps/balancer/src/main.js');
export const agentMain = (root: string): string => join(root, 'dist/apps/gpu-agent/src/main.js');
export const fakeNvmlLibrary = (root: string): string => join(root, 'libs/nvml/fake/build/libnvidia-ml.so.1');

/** The gpu-agent beside one simulator, reading the simulator's fake-NVML state file. */
export async function startAgent(
  ctx: BenchContext,
  name: string,
  port: number,
  simUrl: string,
  statePath: string,
): Promise<Child> {
  const c = startChild(`gpu-agent ${name}`, process.execPath, [agentMain(ctx.root)], {
    env: {
      ...process.env,
      PORT: String(port),
      OLLAMA_HOST: simUrl,
      NVML_LIBRARY_PATH: fakeNvmlLibrary(ctx.root),
      FAKE_NVML_STATE: statePath,
      NVML_POLL_INTERVAL_MS: '500',
      OLLAMA_POLL_INTERVAL_MS: '1000',
      HOSTNAME_LABEL: name,
      LOG_LEVEL: 'warn',
    },
  });
  await waitFor(`http://127.0.0.1:${port}/health/ready`, c, 30_000);
  return c;
}

export async function startSim(ctx: BenchContext, name: string, port: number, configPath: string): Promise<Child> {
  const c = startChild(`sim ${name}`, process.execPath, [
    simCli(ctx.root),
    '--port',
    String(port),
    '--config',
    configPath,
    '--host',
    '127.0.0.1',
  ]);
  await waitFor(`http://127.0.0.1:${port}/api/version`, c, 15_000);
  return c;
}

/** Starts the built balancer; without `configPath` it is configured by `env` alone (and no BALANCER_CONFIG of ours leaks in). */
export async function startBalancer(
  ctx: BenchContext,
  port: number,
  configPath: string | undefined,
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): Promise<Child> {
  const inherited = { ...process.env };
  for (const k of Object.keys(inherited))
    if (/^(BALANCER_CONFIG|OLLAMA_BACKENDS|OLLAMA_AGENTS|BACKEND_PARALLEL|QUEUE_|ROUTING_POLICY)/.test(k))
      delete inherited[k];
  const logDir = process.env.BENCH_BALANCER_LOG_DIR;
  const c = startChild('balancer', process.execPath, [...nodeArgs, balancerMain(ctx.root)], {
    env: {
      ...inherited,
      ...(configPath ? { BALANCER_CONFIG: configPath } : {}),
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_REQUESTS: logDir ? 'true' : 'false',
      LOG_LEVEL: logDir ? 'log' : 'warn',
      ...env,
    },
  });
  // BENCH_BALANCER_LOG_DIR: keep each balancer's JSON log (one line per request: backend, reason,
  // predicted and queued ms) to see why it placed what where.
  if (logDir) {
    mkdirSync(logDir, { recursive: true });
    const out = createWriteStream(join(logDir, `balancer-${port}.log`));
    c.proc.stdout?.pipe(out);
    c.proc.stderr?.pipe(out);
  }
  await waitFor(`http://127.0.0.1:${port}/health/ready`, c, 30_000);
  return c;
}
