import Redis from 'ioredis';
import { AGENT_REGISTRATION_PATH } from '@app/common';
import { SimServer } from '@app/ollama-sim';
import { request, RawResponse, startSims, waitFor, writeConfigFile } from './harness';
import { RedisProcess } from './redis-process';
import { BalancerProcess, httpGet, PeakRecorder } from './replicas';

/**
 * Three balancer replicas (the built dist/, each its own process) sharing one real redis-server, in
 * front of simulated servers whose every model request passes a PeakRecorder: the concurrency each
 * backend itself sees, whichever replica sent the request.
 */
const LLAMA = { name: 'llama3.2:latest', sizeBytes: 2_000_000_000 };
const ADMIN = 'admin-token-for-replicas';
const KEY = 'team-key-0123456789';
/** A key with a token quota per minute (and no request rate). */
const METERED = 'metered-key-0123456789';
const QUOTA = 100;
const REGISTRATION = 'registration-token-0123456789';
const CAP = 2;
const LEASE_MS = 3000;

/** A generate request; with the admin token unless told otherwise (API keys are on, the admin token has no rate). */
const gen = (
  url: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = { authorization: `Bearer ${ADMIN}` },
): Promise<RawResponse> =>
  request(`${url}/api/generate`, {
    body: { model: 'llama3.2', prompt: 'hello there', stream: false, options: { num_predict: 12 }, ...extra },
    headers,
  });

interface Fleet {
  redis: RedisProcess;
  sims: SimServer[];
  recorders: PeakRecorder[];
  replicas: BalancerProcess[];
  env: Record<string, string>;
  close(): Promise<void>;
}

async function startFleet(opts: { redis: boolean; env?: Record<string, string> }): Promise<Fleet> {
  const redis = await RedisProcess.start();
  // 40 tokens/s, 12 tokens: each request holds its slot about 300 ms.
  const sims = await startSims([
    { models: [LLAMA], loaded: ['llama3.2:latest'], tokensPerSecond: 40, numParallel: 8 },
    { models: [LLAMA], loaded: ['llama3.2:latest'], tokensPerSecond: 40, numParallel: 8 },
  ]);
  const recorders = await Promise.all(sims.map((s) => PeakRecorder.start(s.url)));
  const file = writeConfigFile({
    backends: recorders.map((r, i) => ({ name: `b${i + 1}`, url: r.url, parallel: CAP, maxConcurrency: CAP })),
  });
  const env: Record<string, string> = {
    BALANCER_CONFIG: file,
    ADMIN_TOKEN: ADMIN,
    API_KEYS: `team:${KEY}:6,metered:${METERED}`,
    API_KEY_LIMITS: `metered:tokensPerMinute=${QUOTA}`,
    REGISTRATION_TOKEN: REGISTRATION,
    REGISTRATION_TTL_MS: '60000',
    HEALTH_INTERVAL_MS: '200',
    INVENTORY_INTERVAL_MS: '300',
    QUEUE_TIMEOUT_MS: '60000',
    LOG_REQUESTS: 'false',
    LOG_LEVEL: 'warn',
    ...(opts.redis
      ? {
          REDIS_URL: redis.url,
          REDIS_LEASE_MS: String(LEASE_MS),
          REDIS_HEARTBEAT_MS: '500',
          REDIS_QUEUE_RETRY_MS: '200',
          REDIS_COMMAND_TIMEOUT_MS: '200',
        }
      : {}),
    ...opts.env,
  };
  const replicas = await Promise.all(['r1', 'r2', 'r3'].map((n) => BalancerProcess.start(n, env)));
  const auth = { authorization: `Bearer ${ADMIN}` };
  for (const r of replicas)
    await waitFor(
      async () => {
        const st = await httpGet(`${r.url}/balancer/status`, auth);
        return (
          st.body.backends?.every((b: any) => b.health === 'healthy' && b.inventoryAt !== null) &&
          (!opts.redis || st.body.sharedState?.up === true)
        );
      },
      20_000,
      `${r.name} ready`,
    );
  return {
    redis,
    sims,
    recorders,
    replicas,
    env,
    async close() {
      await Promise.all(replicas.map((r) => r.kill()));
      await Promise.all(recorders.map((r) => r.close()));
      await Promise.all(sims.map((s) => s.close()));
      await redis.stop();
    },
  };
}

const auth = { authorization: `Bearer ${ADMIN}` };
const key = { authorization: `Bearer ${KEY}` };

/** Slots Redis counts as held (not yet expired), over every backend; only a replica's when named. */
async function slotsInRedis(url: string, replica?: string): Promise<number> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await r.connect();
  try {
    const [sec, usec] = await r.time();
    const now = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    let n = 0;
    for (const k of await r.keys('olb:b:*')) {
      const live = await r.zrangebyscore(k, `(${now}`, '+inf');
      n += live.filter((id) => replica === undefined || id.startsWith(`${replica}/`)).length;
    }
    return n;
  } finally {
    r.disconnect();
  }
}

async function inFlightAt(r: BalancerProcess): Promise<number> {
  const st = await httpGet(`${r.url}/balancer/status`, auth);
  return st.body.backends.reduce((s: number, b: any) => s + b.inFlight, 0);
}

describe('three replicas, one fleet, shared state on Redis', () => {
  let f: Fleet;
  beforeAll(async () => {
    f = await startFleet({ redis: true });
  });
  afterAll(async () => {
    await f?.close();
  });
  beforeEach(() => f.recorders.forEach((r) => r.reset()));

  it('keeps every backend within its cap under a burst three times what the fleet takes', async () => {
    // 2 backends x 2 slots = 4; 36 requests at once over 3 replicas is 9x the fleet.
    const answers = await Promise.all(Array.from({ length: 36 }, (_, i) => gen(f.replicas[i % 3].url)));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    for (const r of f.recorders) {
      expect(r.peak).toBeLessThanOrEqual(CAP);
      expect(r.served).toBeGreaterThan(0);
    }
    await waitFor(async () => (await slotsInRedis(f.redis.url)) === 0, 10_000, 'the slots to be back');
  });

  it('keeps a pinned conversation on its backend through alternating replicas', async () => {
    const seen: string[] = [];
    for (let turn = 0; turn < 6; turn++) {
      // A long conversation (about 2,000 prompt tokens): staying where its prompt is cached is worth
      // up to AFFINITY_MAX_EXTRA_MS, so only a much sooner backend elsewhere would move it.
      const a = await gen(
        f.replicas[turn % 3].url,
        { prompt: 'tell me more about the fleet. '.repeat(280) },
        { ...auth, 'x-session-id': 'conversation-42' },
      );
      expect(a.status).toBe(200);
      seen.push(String(a.headers['x-balancer-backend']));
    }
    expect(new Set(seen).size).toBe(1);
  });

  it("holds a key's rate across replicas", async () => {
    const answers: number[] = [];
    const began = Date.now();
    for (let i = 0; i < 12; i++) answers.push((await gen(f.replicas[i % 3].url, {}, key)).status);
    // 6 per minute: one token comes back every 10 s, so a slow run may see one more pass.
    const refilled = Math.floor(((Date.now() - began) * 6) / 60_000);
    const passed = answers.filter((s) => s === 200).length;
    expect(passed).toBeGreaterThanOrEqual(6);
    expect(passed).toBeLessThanOrEqual(6 + refilled);
    expect(answers.filter((s) => s === 429)).toHaveLength(12 - passed);
  });

  it("holds a key's token quota across replicas: refused once the global total passes it", async () => {
    const metered = { authorization: `Bearer ${METERED}` };
    const [r1, r2, r3] = f.replicas;
    const perReplica = [0, 0];
    let total = 0;
    let refused: RawResponse | null = null;
    let refusedAt = -1;
    for (let i = 0; i < 30 && refused === null; i++) {
      const a = await gen([r1, r2][i % 2].url, {}, metered);
      if (a.status === 429) {
        refused = a;
        refusedAt = i;
        break;
      }
      // Admitted: the key was under its quota counting every replica's answers so far.
      expect(a.status).toBe(200);
      expect(total).toBeLessThan(QUOTA);
      const used = Number(a.body.prompt_eval_count) + Number(a.body.eval_count);
      expect(used).toBeGreaterThan(0);
      total += used;
      perReplica[i % 2] += used;
      // The answer's tokens are in the shared window (counted when its connection closes): the
      // third replica, which served none of them, reports the global total.
      await waitFor(
        async () => {
          const u = await httpGet(`${r3.url}/balancer/usage`, auth);
          const m = u.body.keys?.find((k: any) => k.key === 'metered');
          return u.body.scope === 'global' && m?.lastMinute.tokens === total;
        },
        10_000,
        'the global usage to count the answer',
      );
    }
    // Refused by the first request after the global total reached the quota, while neither
    // replica's own answers came near it (a per-replica quota would have let it through).
    expect(refused).not.toBeNull();
    expect(total).toBeGreaterThanOrEqual(QUOTA);
    expect(Math.max(...perReplica)).toBeLessThan(QUOTA);
    expect(refusedAt).toBeGreaterThanOrEqual(2);
    expect(refused!.body.error).toMatch(/token quota exceeded for key 'metered'.*tokensPerMinute/);
    expect(Number(refused!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(refused!.headers['retry-after'])).toBeLessThanOrEqual(60);
    // Every replica refuses the key now, the one that served none of its answers included.
    for (const r of f.replicas) {
      const again = await gen(r.url, {}, metered);
      expect(again.status).toBe(429);
      expect(again.headers['retry-after']).toBeDefined();
    }
    // The key sees its own global usage on any replica.
    const own = await httpGet(`${r1.url}/balancer/usage`, metered);
    expect(own.body.scope).toBe('global');
    expect(own.body.keys).toHaveLength(1);
    expect(own.body.keys[0]).toMatchObject({
      key: 'metered',
      requests: refusedAt,
      lastMinute: { tokens: total, limit: QUOTA },
    });
  });

  it('a server registered through one replica is a backend of all of them, and its name is not handed out twice', async () => {
    const [extra] = await startSims([{ models: [LLAMA], loaded: ['llama3.2:latest'], tokensPerSecond: 40 }]);
    const reg = { authorization: `Bearer ${REGISTRATION}` };
    try {
      const r = await request(`${f.replicas[0].url}${AGENT_REGISTRATION_PATH}`, {
        body: { name: 'edge-1', ollamaUrl: extra.url },
        headers: reg,
      });
      expect(r.status).toBe(200);
      for (const x of f.replicas)
        await waitFor(
          async () =>
            (await httpGet(`${x.url}/balancer/status`, auth)).body.backends.some((b: any) => b.name === 'edge-1'),
          20_000,
          `${x.name} to list edge-1`,
        );
      // The same name with another server, through another replica: refused there too.
      const clash = await request(`${f.replicas[2].url}${AGENT_REGISTRATION_PATH}`, {
        body: { name: 'edge-1', ollamaUrl: f.sims[0].url },
        headers: reg,
      });
      expect(clash.status).toBe(409);
      expect(clash.body.error).toMatch(/edge-1/);
      expect(
        (await request(`${f.replicas[1].url}${AGENT_REGISTRATION_PATH}/edge-1`, { method: 'DELETE', headers: reg }))
          .status,
      ).toBeLessThan(300);
      for (const x of f.replicas)
        await waitFor(
          async () =>
            !(await httpGet(`${x.url}/balancer/status`, auth)).body.backends.some(
              (b: any) => b.name === 'edge-1' && b.source === 'registered' && !b.retiring,
            ),
          20_000,
          `${x.name} to retire edge-1`,
        );
    } finally {
      await extra.close();
    }
  });

  it('a cordon issued on one replica stops new traffic through all of them', async () => {
    const at = Date.now();
    const c = await request(`${f.replicas[0].url}/balancer/admin/backends/b1/cordon`, {
      method: 'POST',
      headers: auth,
    });
    expect(c.status).toBe(200);
    for (const r of f.replicas.slice(1))
      await waitFor(
        async () =>
          (await httpGet(`${r.url}/balancer/status`, auth)).body.backends.find((b: any) => b.name === 'b1').cordoned ===
          true,
        10_000,
        `${r.name} to see the cordon`,
      );
    console.log(`cordon seen by every replica after ${Date.now() - at} ms`);
    try {
      const answers = await Promise.all(Array.from({ length: 9 }, (_, i) => gen(f.replicas[i % 3].url)));
      expect(answers.map((a) => a.headers['x-balancer-backend'])).toEqual(answers.map(() => 'b2'));
    } finally {
      await request(`${f.replicas[2].url}/balancer/admin/backends/b1/uncordon`, { method: 'POST', headers: auth });
      for (const r of f.replicas)
        await waitFor(
          async () =>
            (await httpGet(`${r.url}/balancer/status`, auth)).body.backends.find((b: any) => b.name === 'b1')
              .cordoned === false,
          10_000,
          'uncordon',
        );
    }
  });
});

describe('three replicas when one of them, and then Redis, is killed under load', () => {
  let f: Fleet;
  beforeAll(async () => {
    f = await startFleet({ redis: true });
  });
  afterAll(async () => {
    await f?.close();
  });

  it('SIGKILL of a replica: the others answer every request; its slots come back within the lease', async () => {
    const [doomed, a, b] = f.replicas;
    // Load through all three; the doomed one's clients lose their connections, nobody else's do.
    const doomedLoad = Array.from({ length: 6 }, () => gen(doomed.url).catch((e: Error) => e));
    const survivors = Array.from({ length: 24 }, (_, i) => gen((i % 2 ? a : b).url));
    const doomedId: string = (await httpGet(`${doomed.url}/balancer/status`, auth)).body.sharedState.replica;
    await waitFor(
      async () => (await slotsInRedis(f.redis.url, doomedId)) > 0,
      10_000,
      'the doomed replica to hold slots',
    );
    await doomed.kill('SIGKILL');
    const killedAt = Date.now();
    // Its slots expire within the lease (the time is measured, not asserted: a loaded machine may be slower).
    await waitFor(
      async () => (await slotsInRedis(f.redis.url, doomedId)) === 0,
      LEASE_MS * 10,
      "the dead replica's slots to expire",
    );
    console.log(
      `the killed replica's slots were back ${Date.now() - killedAt} ms after the SIGKILL (lease ${LEASE_MS} ms, heartbeat 500 ms)`,
    );
    const answers = await Promise.all(survivors);
    expect(answers.map((x) => x.status)).toEqual(answers.map(() => 200));
    await Promise.all(doomedLoad);
    await waitFor(async () => (await slotsInRedis(f.redis.url)) === 0, 10_000, 'every slot back');
    // And the fleet is whole again for the survivors: a burst still gets all of it, within caps.
    f.recorders.forEach((r) => r.reset());
    const more = await Promise.all(Array.from({ length: 16 }, (_, i) => gen((i % 2 ? a : b).url)));
    expect(more.map((x) => x.status)).toEqual(more.map(() => 200));
    for (const r of f.recorders) expect(r.peak).toBeLessThanOrEqual(CAP);
    expect(await inFlightAt(a)).toBe(0);
    expect(await inFlightAt(b)).toBe(0);
  });

  it('SIGKILL of Redis: every request is answered on local state, readiness stays up, and the replicas re-join', async () => {
    const [, a, b] = f.replicas;
    const load = Array.from({ length: 20 }, (_, i) => gen((i % 2 ? a : b).url));
    await waitFor(() => f.recorders.some((r) => r.inFlight > 0), 10_000, 'load to start');
    await f.redis.kill();
    // More arrive while Redis is gone.
    const during = Array.from({ length: 12 }, (_, i) => gen((i % 2 ? a : b).url));
    const answers = await Promise.all([...load, ...during]);
    expect(answers.map((x) => x.status)).toEqual(answers.map(() => 200));
    for (const r of [a, b]) {
      expect((await httpGet(`${r.url}/health/ready`)).status).toBe(200);
      const metrics = await request(`${r.url}/metrics`, { headers: auth });
      expect(metrics.text).toMatch(/^balancer_shared_state_up 0$/m);
      expect(metrics.text).toMatch(/^balancer_shared_state_replicas [23]$/m);
    }
    // Still without Redis, a burst through both: each replica keeps to its share of each cap
    // (floor(2 / replicas last seen, 2 or 3) = 1 per backend), so together they stay within the caps.
    f.recorders.forEach((r) => r.reset());
    const degraded = await Promise.all(Array.from({ length: 12 }, (_, i) => gen((i % 2 ? a : b).url)));
    expect(degraded.map((x) => x.status)).toEqual(degraded.map(() => 200));
    for (const r of f.recorders) expect(r.peak).toBeLessThanOrEqual(CAP);
    await f.redis.start();
    for (const r of [a, b])
      await waitFor(
        async () => (await httpGet(`${r.url}/balancer/status`, auth)).body.sharedState?.up === true,
        30_000,
        `${r.name} to re-join`,
      );
    const after = await Promise.all(Array.from({ length: 8 }, (_, i) => gen((i % 2 ? a : b).url)));
    expect(after.map((x) => x.status)).toEqual(after.map(() => 200));
    await waitFor(async () => (await slotsInRedis(f.redis.url)) === 0, 10_000, 'zero slots in Redis');
    expect(await inFlightAt(a)).toBe(0);
    expect(await inFlightAt(b)).toBe(0);
  });
});

describe('the same three replicas without Redis (the recorder can see a broken cap)', () => {
  it('exceed a backend cap, which is what the shared state prevents', async () => {
    const f = await startFleet({ redis: false });
    try {
      const answers = await Promise.all(Array.from({ length: 36 }, (_, i) => gen(f.replicas[i % 3].url)));
      expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
      expect(Math.max(...f.recorders.map((r) => r.peak))).toBeGreaterThan(CAP);
    } finally {
      await f.close();
    }
  });
});
