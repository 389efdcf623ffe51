import { ChildProcess, execFileSync, spawn } from 'child_process';
import { existsSync } from 'fs';
import { createServer, Socket } from 'net';
import { join } from 'path';

/**
 * A real redis-server for tests: its own process on a free port, nothing saved to disk. Each suite
 * starts its own; kill() is SIGKILL (the failure tests want exactly that) and start() again brings
 * a fresh, empty server back on the same port.
 */
export class RedisProcess {
  private proc: ChildProcess | null = null;
  private constructor(readonly port: number) {}

  static async start(port?: number): Promise<RedisProcess> {
    const r = new RedisProcess(port ?? (await freePort()));
    await r.start();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(): Promise<void> {
    const bin = redisServerBinary();
    const proc = spawn(
      bin,
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'no',
        '--loglevel',
        'warning',
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    this.proc = proc;
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (proc.exitCode !== null)
        throw new Error(`redis-server on port ${this.port} exited with ${proc.exitCode}: ${stderr}`);
      if (await answersPing(this.port)) return;
      if (Date.now() > deadline)
        throw new Error(`redis-server on port ${this.port} did not answer within 20 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGKILL: no goodbye to the clients, its memory gone. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || !this.running) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    this.proc = null;
  }

  /** SIGSTOP: the server hangs with its connections open (a stalled or partitioned Redis). */
  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.proc?.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    this.resume();
    await this.kill();
  }
}

/** The redis-server binary, or a clear error naming how to get one. */
export function redisServerBinary(): string {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) if (existsSync(p)) return p;
  try {
    const found = execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim();
    if (found) return found;
  } catch {
    // fall through to the error below
  }
  const script = join(__dirname, '..', '..', '..', 'scripts', 'ensure-redis.sh');
  throw new Error(
    `redis-server is not installed: run ${existsSync(script) ? 'bash scripts/ensure-redis.sh' : 'apt-get install -y redis-server'} (the shared-state tests start a real one)`,
  );
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    let buf = '';
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('error', () => done(false));
    s.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}
