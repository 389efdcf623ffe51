import { ChildProcess, spawn } from 'child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { SimServer } from '@app/ollama-sim';
import {
  Child,
  freePort,
  getJson,
  parseStream,
  REPO_ROOT,
  request,
  spawnBalancer,
  startSims,
  streamTimed,
  waitFor,
  writeConfigFile,
} from './harness';

/**
 * The compose file's replicas profile, without Docker: deploy/compose/haproxy.cfg (its server
 * addresses and bind port rewritten to this machine's, nothing else) in front of three real balancer
 * processes. Proves how clients reach the replicas there: every replica gets traffic, and a replica
 * that drains on SIGTERM costs no client a failed request (HAProxy stops sending new requests to it
 * once /health/ready says 503, and retries the few refused before that on another replica).
 */
const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => {
  try {
    readFileSync(p);
    return true;
  } catch {
    return false;
  }
});
const model = 'llama3.2';

/** The shipped haproxy.cfg, pointed at local ports instead of compose service names. */
function localHaproxyCfg(lbPort: number, balancers: { name: string; port: number }[]): string {
  let cfg = readFileSync(path.join(REPO_ROOT, 'deploy/compose/haproxy.cfg'), 'utf8');
  // Docker's DNS is not here: drop the resolvers section and its use.
  cfg = cfg.replace(/^resolvers docker\n(?:[ \t]+.*\n)+/m, '').replace(/ resolvers docker/g, '');
  cfg = cfg.replace(/^([ \t]*bind[ \t]+):11434[ \t]*$/m, `$1127.0.0.1:${lbPort}`);
  for (const b of balancers) {
    const before = cfg;
    cfg = cfg.replace(
      new RegExp(`^([ \\t]*server[ \\t]+${b.name}[ \\t]+)${b.name}:11434[ \\t]*$`, 'm'),
      `$1127.0.0.1:${b.port}`,
    );
    if (cfg === before) throw new Error(`haproxy.cfg has no server line for ${b.name}`);
  }
  return cfg;
}

async function requestsServed(url: string): Promise<number> {
  const text = (await request(`${url}/metrics`)).text;
  return [...text.matchAll(/^balancer_requests_total\{[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
}

// Skipped only where haproxy is not installed (sh tools/bench/ensure-peers.sh installs it; CI has it).
(HAPROXY ? describe : describe.skip)('compose replicas profile: HAProxy in front of three balancers', () => {
  let sims: SimServer[] = [];
  let balancers: Child[] = [];
  let haproxy: ChildProcess | undefined;
  let dir: string;
  let lb: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'compose-haproxy-'));
    sims = await startSims([
      { tokensPerSecond: 50, numParallel: 8, loaded: [model] },
      { tokensPerSecond: 50, numParallel: 8, loaded: [model] },
    ]);
    const file = writeConfigFile({ backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url })) });
    balancers = await Promise.all(
      [0, 1, 2].map(() => spawnBalancer({ BALANCER_CONFIG: file, LOG_REQUESTS: 'false', DRAIN_TIMEOUT_MS: '30000' })),
    );
    for (const b of balancers)
      await waitFor(async () => (await getJson(`${b.url}/health/ready`)).status === 200, 20_000, 'replica ready');
    const lbPort = await freePort();
    const cfgPath = path.join(dir, 'haproxy.cfg');
    writeFileSync(
      cfgPath,
      localHaproxyCfg(
        lbPort,
        ['balancer', 'balancer-2', 'balancer-3'].map((name, i) => ({
          name,
          port: Number(new URL(balancers[i].url).port),
        })),
      ),
    );
    haproxy = spawn(HAPROXY!, ['-db', '-f', cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    lb = `http://127.0.0.1:${lbPort}`;
    // HAProxy's monitor-uri: 200 once at least one replica passed its /health/ready check.
    await waitFor(
      async () => (await getJson(`${lb}/haproxy-health`).catch(() => ({ status: 0 }))).status === 200,
      20_000,
      'HAProxy up',
    );
  });

  afterAll(async () => {
    haproxy?.kill('SIGKILL');
    for (const b of balancers) if (b.proc.exitCode === null && b.proc.signalCode === null) b.proc.kill('SIGKILL');
    await Promise.all(sims.map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('spreads requests over every replica', async () => {
    const before = await Promise.all(balancers.map((b) => requestsServed(b.url)));
    // Concurrent, so leastconn has in-flight counts to compare.
    const answers = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        request(`${lb}/api/generate`, {
          body: { model, prompt: `p${i}`, stream: false, options: { num_predict: 20 } },
        }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    const after = await Promise.all(balancers.map((b) => requestsServed(b.url)));
    const served = after.map((n, i) => n - before[i]);
    expect(served.reduce((a, b) => a + b, 0)).toBe(24);
    expect(served.every((n) => n > 0)).toBe(true);
  });

  it('a replica drains on SIGTERM: its stream finishes, and no client request fails meanwhile', async () => {
    const victim = balancers[0];
    // A stream that is running on the victim itself when it gets SIGTERM.
    let started = false;
    const stream = streamTimed(
      `${victim.url}/api/generate`,
      { model, prompt: 'long', options: { num_predict: 60 } },
      () => (started = true),
    );
    await waitFor(() => started, 15_000, 'the stream under way');

    let stop = false;
    const statuses: number[] = [];
    const load = (async () => {
      // Four clients in a loop through HAProxy, before, during and after the drain.
      await Promise.all(
        [0, 1, 2, 3].map(async (c) => {
          for (let i = 0; !stop; i++) {
            const r = await request(`${lb}/api/generate`, {
              body: { model, prompt: `c${c}-${i}`, stream: false, options: { num_predict: 5 } },
            }).catch(() => ({ status: -1 }));
            statuses.push(r.status);
          }
        }),
      );
    })();
    await waitFor(() => statuses.length >= 8, 20_000, 'load running');
    victim.proc.kill('SIGTERM');
    const exitCode = await victim.exited;
    const afterExit = statuses.length;
    await waitFor(() => statuses.length >= afterExit + 8, 20_000, 'load after the replica is gone');
    stop = true;
    await load;

    const s = await stream;
    expect(s.status).toBe(200);
    const objs = parseStream(s.chunks.map((c) => c.text).join(''));
    expect(objs[objs.length - 1].done).toBe(true);
    expect(exitCode).toBe(0);
    expect(statuses.filter((x) => x !== 200)).toEqual([]);
  });
});
