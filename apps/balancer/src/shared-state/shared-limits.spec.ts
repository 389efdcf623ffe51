import Redis from 'ioredis';
import { RedisProcess } from '../../test/redis-process';
import { RedisLink } from './redis-link';
import { ReceivedEvent, SharedEvents } from './shared-events';
import { SharedDemand, SharedPins, SharedQuotas, SharedRateLimiter, SharedRegistrations } from './shared-limits';
import { loadSharedStateConfig } from '../config/shared-state-config';

const until = async (cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('pins, rates, quotas and fleet events shared on a real redis-server', () => {
  let redis: RedisProcess;
  const links: RedisLink[] = [];
  let n = 0;
  let prefix = '';

  const link = async (): Promise<RedisLink> => {
    const cfg = loadSharedStateConfig({
      REDIS_URL: redis.url,
      REDIS_PREFIX: prefix,
      REDIS_HEARTBEAT_MS: '200',
      REDIS_LEASE_MS: '1000',
      REDIS_COMMAND_TIMEOUT_MS: '2000',
    });
    const l = new RedisLink({ ...cfg, url: cfg.url! });
    l.start();
    links.push(l);
    await until(() => l.up, 'the link');
    return l;
  };

  beforeAll(async () => {
    redis = await RedisProcess.start();
  });
  beforeEach(() => {
    prefix = `l${++n}:`;
  });
  afterEach(async () => {
    for (const l of links.splice(0)) await l.stop();
  });
  afterAll(() => redis.stop());

  it('a pin set through one replica is read through another, and expires after its TTL of disuse', async () => {
    const [a, b] = [await link(), await link()];
    const pa = new SharedPins(a, 400);
    const pb = new SharedPins(b, 400);
    expect(await pb.get('c:m:abc')).toBeNull();
    pa.set('c:m:abc', 'gpu2');
    await until(async () => (await pb.get('c:m:abc')) === 'gpu2', 'the pin to be visible');
    // Nothing the client sent is stored as such: the key is a hash.
    const admin = new Redis(redis.url);
    const keys = await admin.keys(`${prefix}pin:*`);
    admin.disconnect();
    expect(keys).toHaveLength(1);
    expect(keys[0]).not.toContain('abc');
    await until(async () => (await pb.get('c:m:abc')) === null, 'the pin to expire');
  });

  it("a key's rate holds across three replicas", async () => {
    const ls = [await link(), await link(), await link()];
    const limiters = ls.map((l) => new SharedRateLimiter(l));
    const verdicts = await Promise.all(Array.from({ length: 12 }, (_, i) => limiters[i % 3].take('team-a', 5)));
    expect(verdicts.filter((v) => v.allowed)).toHaveLength(5);
    const refused = verdicts.filter((v) => !v.allowed);
    expect(refused).toHaveLength(7);
    // At 5 per minute one token takes 12 s to come back.
    for (const v of refused) expect(v.waitMs).toBeGreaterThan(0);
    for (const v of refused) expect(v.waitMs).toBeLessThanOrEqual(12_000);
    // Another key has its own bucket.
    expect((await limiters[1].take('team-b', 5)).allowed).toBe(true);
  });

  it('quota counters add up across replicas and refuse what would pass the limit', async () => {
    const [a, b] = [await link(), await link()];
    const qa = new SharedQuotas(a);
    const qb = new SharedQuotas(b);
    expect(await qa.take('key1:tokens', 600, 1000, 3_600_000)).toMatchObject({ added: true, used: 600 });
    expect(await qb.take('key1:tokens', 500, 1000, 3_600_000)).toMatchObject({ added: false, used: 600 });
    expect(await qb.take('key1:tokens', 400, 1000, 3_600_000)).toMatchObject({ added: true, used: 1000 });
    expect(await qa.add('key1:tokens', 250, 3_600_000)).toMatchObject({ added: true, used: 1250 });
    const read = await qb.read('key1:tokens', 3_600_000);
    expect(read.used).toBe(1250);
    expect(read.resetMs).toBeGreaterThan(0);
    expect(read.resetMs).toBeLessThanOrEqual(3_600_000);
  });

  it('a sliding window counts across replicas and says when a refused amount would fit', async () => {
    const [a, b] = [await link(), await link()];
    const qa = new SharedQuotas(a);
    const qb = new SharedQuotas(b);
    expect(await qa.slide('k:tpm', 700, 1000, 1000, 60)).toMatchObject({ added: true, used: 700 });
    expect(await qb.slide('k:tpm', 200, 1000, 1000, 60)).toMatchObject({ added: true, used: 900 });
    const refused = await qb.slide('k:tpm', 300, 1000, 1000, 60);
    expect(refused).toMatchObject({ added: false, used: 900 });
    // The first 700 leave the window within its 60 s.
    expect(refused.resetMs).toBeGreaterThan(0);
    expect(refused.resetMs).toBeLessThanOrEqual(60_000);
    expect((await qa.slide('k:tpm', 2000, 1000, 1000, 60)).resetMs).toBe(-1);
    expect(await qa.slide('k:tpm', 50, 0, 1000, 60)).toMatchObject({ added: true, used: 950 });
  });

  it('registrations: one list for every replica, a name or a URL never held twice, expired ones gone', async () => {
    const [a, b] = [await link(), await link()];
    const ra = new SharedRegistrations(a);
    const rb = new SharedRegistrations(b);
    const now = Date.now();
    expect(
      await ra.upsert({ name: 'edge-1', ollamaUrl: 'http://10.0.0.1:11434', expiresAt: now + 10_000 }, now, 2),
    ).toEqual({ ok: true, created: true });
    expect(
      await rb.upsert({ name: 'edge-1', ollamaUrl: 'http://10.0.0.1:11434', expiresAt: now + 20_000 }, now, 2),
    ).toEqual({ ok: true, created: false });
    expect(
      await rb.upsert({ name: 'edge-1', ollamaUrl: 'http://10.0.0.9:11434', expiresAt: now + 20_000 }, now, 2),
    ).toMatchObject({ ok: false, conflict: 'name', heldUrl: 'http://10.0.0.1:11434' });
    expect(
      await rb.upsert({ name: 'edge-2', ollamaUrl: 'http://10.0.0.1:11434', expiresAt: now + 20_000 }, now, 2),
    ).toEqual({ ok: false, conflict: 'url', heldBy: 'edge-1' });
    expect(
      await rb.upsert(
        {
          name: 'edge-2',
          ollamaUrl: 'http://10.0.0.2:11434',
          agentUrl: 'http://10.0.0.2:9400',
          expiresAt: now + 20_000,
        },
        now,
        2,
      ),
    ).toEqual({ ok: true, created: true });
    expect(
      await ra.upsert({ name: 'edge-3', ollamaUrl: 'http://10.0.0.3:11434', expiresAt: now + 20_000 }, now, 2),
    ).toEqual({ ok: false, conflict: 'full' });
    expect((await ra.list(now)).map((r) => r.name).sort()).toEqual(['edge-1', 'edge-2']);
    // Past edge-1's expiry it holds nothing: its URL may be taken by another name.
    const later = now + 20_001;
    expect(
      await ra.upsert({ name: 'edge-3', ollamaUrl: 'http://10.0.0.1:11434', expiresAt: later + 10_000 }, later, 2),
    ).toEqual({ ok: true, created: true });
    expect(await rb.remove('edge-3')).toBe(true);
    expect(await rb.remove('edge-3')).toBe(false);
  });

  it('a cordon and an ejection on one replica reach the others, and a replica that joins later adopts them', async () => {
    const [a, b, c] = [await link(), await link(), await link()];
    const ea = new SharedEvents(a);
    const seen: Record<string, ReceivedEvent[]> = { b: [], c: [], a: [] };
    ea.onEvent((e) => seen.a.push(e));
    new SharedEvents(b).onEvent((e) => seen.b.push(e));
    new SharedEvents(c).onEvent((e) => seen.c.push(e));
    expect(await ea.cordon('gpu1', true)).toBe(true);
    expect(await ea.eject('gpu2', Date.now() + 60_000, 1)).toBe(true);
    await until(() => seen.b.length === 2 && seen.c.length === 2, 'both events at both replicas');
    expect(seen.b[0]).toMatchObject({ t: 'cordon', backend: 'gpu1', on: true, from: a.replicaId });
    expect(seen.c[1]).toMatchObject({ t: 'eject', backend: 'gpu2', ejections: 1 });
    // A replica does not act on its own messages twice.
    expect(seen.a).toHaveLength(0);

    const late = await link();
    const el = new SharedEvents(late);
    const snaps: { cordoned: string[]; ejected: string[] }[] = [];
    el.onSnapshot((s) => snaps.push({ cordoned: [...s.cordoned], ejected: [...s.ejectedUntil.keys()] }));
    await el.sync();
    expect(snaps.at(-1)).toEqual({ cordoned: ['gpu1'], ejected: ['gpu2'] });
    await ea.cordon('gpu1', false);
    await el.sync();
    expect(snaps.at(-1)?.cordoned).toEqual([]);
  });

  it("demand: each replica reads the others' per-model readings summed, never its own, and stale ones are dropped", async () => {
    const [a, b, c] = [await link(), await link(), await link()];
    const [da, db, dc] = [new SharedDemand(a), new SharedDemand(b), new SharedDemand(c)];
    await da.exchange({ m: { arrivals: 2, rate: 3, perS: 2 }, only: { arrivals: 1, rate: 1, perS: null } }, 5000);
    await db.exchange({ m: { arrivals: 1, rate: 1.5, perS: null } }, 5000);
    const seen = await dc.exchange({ m: { arrivals: 10, rate: 10, perS: 10 } }, 5000);
    expect(Object.fromEntries(seen)).toEqual({
      m: { arrivals: 3, rate: 4.5, perS: 2 },
      only: { arrivals: 1, rate: 1, perS: null },
    });
    expect((await da.exchange({}, 5000)).get('m')).toEqual({ arrivals: 11, rate: 11.5, perS: 10 });
    // Garbage in the hash (another version, a hostile write) is skipped; an entry older than the
    // limit is ignored and deleted.
    const admin = new Redis(redis.url);
    try {
      await admin.hset(
        `${prefix}demand`,
        'junk',
        'not json',
        'bad',
        JSON.stringify({ at: Date.now(), v: { m: { arrivals: -1, rate: 'x' } } }),
      );
      await admin.hset(
        `${prefix}demand`,
        'old',
        JSON.stringify({ at: Date.now() - 60_000, v: { m: { arrivals: 5, rate: 5, perS: 5 } } }),
      );
      // a now gives nothing (its last write was empty): c's alone.
      expect((await db.exchange({}, 5000)).get('m')).toEqual({ arrivals: 10, rate: 10, perS: 10 });
      await until(async () => (await admin.hexists(`${prefix}demand`, 'old')) === 0, 'the stale entry deleted');
    } finally {
      admin.disconnect();
    }
  });
});
