import { ChildProcess, spawn } from 'child_process';
import { existsSync } from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import { join } from 'path';
import { freePort } from './redis-process';

const MODEL_ROUTES = /^\/(api\/(generate|chat|embed|embeddings)|v1\/(chat\/completions|completions|embeddings))\b/;

/**
 * A recording front for one backend: everything passes through to the real (simulated) server;
 * model requests are counted while they are open, and the most ever open at once is kept. This is
 * the concurrency the backend itself sees, whichever balancer replica sent the request.
 */
export class PeakRecorder {
  inFlight = 0;
  peak = 0;
  served = 0;
  private readonly server: http.Server;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  private constructor(private readonly target: URL) {
    this.server = http.createServer((req, res) => this.pass(req, res));
    this.server.keepAliveTimeout = 30_000;
  }

  static async start(targetUrl: string): Promise<PeakRecorder> {
    const r = new PeakRecorder(new URL(targetUrl));
    await new Promise<void>((resolve) => r.server.listen(0, '127.0.0.1', resolve));
    return r;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  reset(): void {
    this.peak = this.inFlight;
    this.served = 0;
  }

  private pass(req: http.IncomingMessage, res: http.ServerResponse): void {
    const counted = req.method === 'POST' && MODEL_ROUTES.test(req.url ?? '');
    let open = counted;
    if (counted) {
      this.inFlight++;
      this.served++;
      if (this.inFlight > this.peak) this.peak = this.inFlight;
    }
    const done = () => {
      if (open) {
        open = false;
        this.inFlight--;
      }
    };
    const up = http.request(
      {
        hostname: this.target.hostname,
        port: this.target.port,
        path: req.url,
        method: req.method,
        headers: req.headers,
        agent: this.agent,
      },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
        ur.on('end', done);
        ur.on('error', done);
      },
    );
    up.on('error', (e) => {
      done();
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: e.message }));
    });
    res.on('close', () => {
      done();
      up.destroy();
    });
    req.pipe(up);
  }

  async close(): Promise<void> {
    this.agent.destroy();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

/** One balancer replica: the built dist/ started as production starts it, in its own process. */
export class BalancerProcess {
  private output = '';
  private constructor(
    readonly name: string,
    readonly port: number,
    readonly proc: ChildProcess,
  ) {
    const keep = (d: Buffer) => (this.output = (this.output + d.toString()).slice(-20_000));
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
  }

  static async start(name: string, env: Record<string, string>): Promise<BalancerProcess> {
    const main = join(__dirname, '..', '..', '..', 'dist', 'apps', 'balancer', 'src', 'main.js');
    if (!existsSync(main)) throw new Error(`${main} is missing: run npx nest build balancer first`);
    const port = await freePort();
    const proc = spawn(process.execPath, [main], {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const b = new BalancerProcess(name, port, proc);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}: ${b.output}`);
      try {
        const r = await httpGet(`${b.url}/health/live`);
        if (r.status === 200) return b;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`${name} did not come up within 30 s: ${b.output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Last lines it printed (JSON logs). */
  logs(): string {
    return this.output;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill(signal);
    await exited;
  }

  /** SIGTERM (the graceful drain), SIGKILL if it has not left after 10 s. */
  async stop(): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
}

export function httpGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 5000, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let body: any = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}
