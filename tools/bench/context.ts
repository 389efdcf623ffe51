import { existsSync } from 'fs';
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

export async function startSim(ctx: BenchContext, name: string, port: number, configPath: string): Promise<Child> {
  const c = startChild(`sim ${name}`, process.execPath, [simCli(ctx.root), '--port', String(port), '--config', configPath, '--host', '127.0.0.1']);
  await waitFor(`http://127.0.0.1:${port}/api/version`, c, 15_000);
  return c;
}

export async function startBalancer(ctx: BenchContext, port: number, configPath: string, env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Child> {
  const c = startChild('balancer', process.execPath, [...nodeArgs, balancerMain(ctx.root)], {
    env: {
      ...process.env,
      BALANCER_CONFIG: configPath,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_REQUESTS: 'false',
      LOG_LEVEL: 'warn',
      ...env,
    },
  });
  await waitFor(`http://127.0.0.1:${port}/health/ready`, c, 30_000);
  return c;
}
