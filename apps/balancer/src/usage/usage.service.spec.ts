import { RedisProcess } from '../../test/redis-process';
import { loadBalancerConfig } from '../config/balancer-config';
import { loadSharedStateConfig } from '../config/shared-state-config';
import { SharedState } from '../shared-state';
import { UsageService } from './usage.service';

const until = async (cond: () => boolean, what: string, ms = 20_000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

/** Waits until the key's global minute window, as `u` views it, holds `tokens`. */
const globalTokens = async (u: UsageService, tokens: number): Promise<void> => {
  const deadline = Date.now() + 20_000;
  let seen = -1;
  while ((seen = (await u.globalView('metered')).keys[0].lastMinute.tokens) !== tokens) {
    if (Date.now() > deadline) throw new Error(`the global window holds ${seen} tokens, not ${tokens}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const ENV = {
  OLLAMA_BACKENDS: 'http://127.0.0.1:1',
  API_KEYS: 'metered:metered-key-0123456789,free:free-key-0123456789',
  API_KEY_LIMITS: 'metered:tokensPerMinute=100',
};

describe('UsageService: token quotas judged on every replica through a real redis-server', () => {
  let redis: RedisProcess;
  const states: SharedState[] = [];
  let n = 0;

  /** A replica's usage service on the shared state (REDIS_PREFIX per test). */
  const replica = async (prefix: string): Promise<UsageService> => {
    const cfg = loadSharedStateConfig({
      REDIS_URL: redis.url,
      REDIS_PREFIX: prefix,
      REDIS_HEARTBEAT_MS: '200',
      REDIS_LEASE_MS: '1000',
      REDIS_COMMAND_TIMEOUT_MS: '2000',
    });
    const s = new SharedState({ ...cfg, url: cfg.url! }, () => ({ backendCap: 0, modelCap: 0 }));
    s.start();
    states.push(s);
    await until(() => s.up, 'the link');
    return new UsageService(loadBalancerConfig(ENV), Date.now, s);
  };

  beforeAll(async () => {
    redis = await RedisProcess.start();
  });
  afterEach(async () => {
    for (const s of states.splice(0)) await s.stop();
  });
  afterAll(() => redis.stop());

  it('one process: the ledger decides at once (no promise), as before shared state', () => {
    const u = new UsageService(loadBalancerConfig(ENV), Date.now);
    expect(u.check('metered')).toBeNull();
    u.record('metered', { promptTokens: 60, outputTokens: 40 });
    const r = u.check('metered');
    expect(r).toMatchObject({ key: 'metered', limit: 'tokensPerMinute', allowed: 100, used: 100 });
    expect(u.check('free')).toBeNull();
  });

  it("refuses on one replica once another's answers pass the quota, and views the global totals", async () => {
    const prefix = `u${++n}:`;
    const a = await replica(prefix);
    const b = await replica(prefix);
    a.record('metered', { promptTokens: 30, outputTokens: 30 });
    b.record('metered', { promptTokens: 20, outputTokens: 10 });
    // Recording is fire and forget: wait until Redis holds both answers.
    await globalTokens(a, 90);
    await expect(Promise.resolve(a.check('metered'))).resolves.toBeNull();
    a.record('metered', { promptTokens: 5, outputTokens: 5 });
    await globalTokens(b, 100);
    const view = await b.globalView();
    expect(view.scope).toBe('global');
    expect(view.keys.find((k) => k.key === 'metered')).toMatchObject({
      requests: 3,
      promptTokens: 55,
      outputTokens: 45,
      lastMinute: { tokens: 100, limit: 100 },
    });
    // b served 30 tokens itself, but the key is at 100 globally: refused, the limit named.
    const refused = await b.check('metered');
    expect(refused).toMatchObject({ key: 'metered', limit: 'tokensPerMinute', allowed: 100, used: 100 });
    expect(refused!.retryAfterS).toBeGreaterThanOrEqual(1);
    expect(refused!.retryAfterS).toBeLessThanOrEqual(60);
    expect(b.refusals.get('metered\u0000tokensPerMinute')).toBe(1);
    // Each replica's own metrics stay its own.
    expect(b.view('metered')[0].lastMinute.tokens).toBe(30);
    expect(await b.check('free')).toBeNull();
  });

  it("while Redis is away: the local ledger decides on this replica's share of the quota", async () => {
    const prefix = `u${++n}:`;
    const a = await replica(prefix);
    await replica(prefix);
    const link = states[0].link;
    await until(() => link.replicasSeen === 2, 'both replicas seen');
    a.record('metered', { promptTokens: 30, outputTokens: 20 });
    // Redis stops answering: the check does not wait past the command timeout, and judges 50 used
    // against this replica's half of 100.
    await redis.kill();
    try {
      await until(() => !link.up, 'the link to go down');
      const r = a.check('metered');
      expect(r).not.toBeInstanceOf(Promise);
      expect(r).toMatchObject({ key: 'metered', limit: 'tokensPerMinute', allowed: 50, used: 50 });
      expect((await a.globalView()).scope).toBe('replica');
    } finally {
      await redis.start();
    }
  });
});
