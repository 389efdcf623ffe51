/** Child processes of the benchmark: started, awaited and always killed (exit, error, SIGINT). */
import { ChildProcess, spawn, SpawnOptions } from 'child_process';
import { existsSync, readFileSync } from 'fs';
import * as http from 'http';
import * as net from 'net';

const children = new Set<ChildProcess>();
let hooksInstalled = false;

/** Signals a child's whole process group (nginx and HAProxy fork workers that a plain kill would orphan). */
function killGroup(c: ChildProcess, signal: NodeJS.Signals): void {
  if (!c.pid) return;
  try {
    process.kill(-c.pid, signal);
  } catch {
    try {
      process.kill(c.pid, signal);
    } catch {
      /* already gone */
    }
  }
}

function killAll(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const c of children) killGroup(c, signal);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => killAll());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping children\n`);
      killAll();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (e) => {
    process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
    killAll();
    process.exit(1);
  });
}

export interface Child {
  proc: ChildProcess;
  pid: number;
  name: string;
  /** Last lines of stdout+stderr, for error messages. */
  tail(): string;
  stop(): Promise<void>;
}

export function startChild(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Child {
  installHooks();
  // detached: each child leads its own process group, so killGroup reaches its workers too.
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...opts });
  children.add(proc);
  let tail = '';
  const keep = (d: Buffer): void => {
    tail = (tail + d.toString()).slice(-4000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  proc.on('exit', () => children.delete(proc));
  const child: Child = {
    proc,
    pid: proc.pid ?? -1,
    name,
    tail: () => tail,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) {
          killGroup(proc, 'SIGKILL'); // stray workers, if any
          return resolve();
        }
        const t = setTimeout(() => killGroup(proc, 'SIGKILL'), 3000);
        proc.once('exit', () => {
          clearTimeout(t);
          killGroup(proc, 'SIGKILL');
          resolve();
        });
        killGroup(proc, 'SIGTERM');
      }),
  };
  return child;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function httpGet(url: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Polls `url` until it answers 2xx (and `accept(body)` if given). */
export async function waitFor(
  url: string,
  child: Child | undefined,
  timeoutMs = 20_000,
  accept?: (body: string) => boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (child && (child.proc.exitCode !== null || child.proc.signalCode !== null)) {
      throw new Error(
        `${child.name} exited (${child.proc.exitCode ?? child.proc.signalCode}) before ${url} answered:\n${child.tail()}`,
      );
    }
    try {
      const r = await httpGet(url, 1000);
      if (r.status >= 200 && r.status < 300 && (!accept || accept(r.body))) return;
      last = `HTTP ${r.status} ${r.body.slice(0, 200)}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${url} (${last})${child ? `\n${child.name} output:\n${child.tail()}` : ''}`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resident memory of a process in bytes (VmRSS), or NaN. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Full path of an executable on PATH (or in sbin dirs), or undefined. */
export function which(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) {
    if (d && existsSync(`${d}/${cmd}`)) return `${d}/${cmd}`;
  }
  return undefined;
}

/** Runs a command to completion in its own process; resolves with stdout. */
export function runToEnd(
  cmd: string,
  args: string[],
  opts: SpawnOptions & { timeoutMs?: number; input?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  installHooks();
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, ...opts });
    children.add(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d) => (stdout += d));
    proc.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-8000)));
    const t = opts.timeoutMs ? setTimeout(() => killGroup(proc, 'SIGKILL'), opts.timeoutMs) : undefined;
    proc.on('error', reject);
    proc.on('exit', (code, sig) => {
      children.delete(proc);
      if (t) clearTimeout(t);
      resolve({ code: code ?? (sig ? 128 : 1), stdout, stderr });
    });
    if (opts.input !== undefined) proc.stdin!.end(opts.input);
    else proc.stdin!.end();
  });
}
