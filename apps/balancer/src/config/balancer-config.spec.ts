import { writeFileSync, mkdtempSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { ConfigError, loadBalancerConfig, normaliseModelName } from './balancer-config';

const base = { OLLAMA_BACKENDS: 'http://gpu1:11434,gpu2:11500' };

describe('loadBalancerConfig', () => {
  it('reads backends from OLLAMA_BACKENDS with defaults', () => {
    const c = loadBalancerConfig(base);
    expect(c.port).toBe(11434);
    expect(c.policy).toBe('predictive');
    expect(c.healthFailureThreshold).toBe(3);
    expect(c.backends.map((b) => [b.name, b.url])).toEqual([
      ['gpu1:11434', 'http://gpu1:11434'],
      ['gpu2:11500', 'http://gpu2:11500'],
    ]);
    expect(c.adminToken).toBeUndefined();
    expect(c.apiKeys).toEqual([]);
  });

  it.each([
    ['PORT', 'abc', /PORT="abc"/],
    ['PORT', '70000', /PORT="70000"/],
    ['HEALTH_FAILURE_THRESHOLD', '0', /HEALTH_FAILURE_THRESHOLD="0"/],
    ['ROUTING_POLICY', 'fastest', /ROUTING_POLICY="fastest" must be one of predictive/],
    ['OLLAMA_BACKENDS', 'ftp://x', /OLLAMA_BACKENDS="ftp:\/\/x" must use http or https/],
    ['RETRY_BUDGET_RATIO', '2', /RETRY_BUDGET_RATIO="2"/],
    ['FORWARD_AUTHORIZATION', 'maybe', /FORWARD_AUTHORIZATION="maybe" must be true or false/],
    ['LOG_LEVEL', 'loud', /LOG_LEVEL="loud"/],
  ])('a bad %s (%s) stops start-up naming the setting and the value', (key, value, message) => {
    expect(() => loadBalancerConfig({ ...base, [key]: value })).toThrow(ConfigError);
    expect(() => loadBalancerConfig({ ...base, [key]: value })).toThrow(message);
  });

  it('never echoes a secret in its error', () => {
    expect(() => loadBalancerConfig({ ...base, ADMIN_TOKEN: 'short' })).toThrow(/ADMIN_TOKEN="<redacted>"/);
    expect(() => loadBalancerConfig({ ...base, OLLAMA_BACKENDS: 'http://user:pw@h:1' })).toThrow(/<redacted>/);
  });

  it('MODEL_MANAGEMENT is open by default; a bad mode, or admin without ADMIN_TOKEN, stops start-up', () => {
    expect(() => loadBalancerConfig({ ...base, MODEL_MANAGEMENT: 'closed' })).toThrow(
      'Invalid configuration: MODEL_MANAGEMENT="closed" must be one of open, admin, off',
    );
    expect(() => loadBalancerConfig({ ...base, MODEL_MANAGEMENT: 'admin' })).toThrow(
      /MODEL_MANAGEMENT="admin" needs ADMIN_TOKEN/,
    );
    expect(
      loadBalancerConfig({ ...base, MODEL_MANAGEMENT: 'admin', ADMIN_TOKEN: 'long-enough-token' }).modelManagement,
    ).toBe('admin');
    expect(loadBalancerConfig(base).modelManagement).toBe('open');
  });

  it('reads per-backend options from BALANCER_CONFIG and names a bad field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const good = join(dir, 'good.json');
    writeFileSync(
      good,
      JSON.stringify({
        backends: [{ name: 'a', url: 'http://h:1', parallel: 2, weight: 3, agentUrl: 'http://h:9400' }],
        settings: { ROUTING_POLICY: 'round-robin' },
      }),
    );
    const c = loadBalancerConfig({ BALANCER_CONFIG: good });
    expect(c.backends[0]).toMatchObject({
      name: 'a',
      parallel: 2,
      modelConcurrency: 2,
      weight: 3,
      agentUrl: 'http://h:9400',
    });
    expect(c.policy).toBe('round-robin');
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ backends: [{ name: 'a', url: 'http://h:1', parallel: 0 }] }));
    expect(() => loadBalancerConfig({ BALANCER_CONFIG: bad })).toThrow(/backends\[0\]\.parallel=0/);
    writeFileSync(bad, '{ nope');
    expect(() => loadBalancerConfig({ BALANCER_CONFIG: bad })).toThrow(
      /BALANCER_CONFIG=".*bad.json" is not valid JSON/,
    );
    expect(() => loadBalancerConfig({ BALANCER_CONFIG: join(dir, 'missing.json') })).toThrow(/cannot be read/);
    writeFileSync(
      bad,
      JSON.stringify({
        backends: [
          { name: 'a', url: 'http://h:1' },
          { name: 'a', url: 'http://h:2' },
        ],
      }),
    );
    expect(() => loadBalancerConfig({ BALANCER_CONFIG: bad })).toThrow(/backend name="a" is used twice/);
  });

  it('parses API keys with rate and model allow-list', () => {
    const c = loadBalancerConfig({ ...base, API_KEYS: 'team-a:secretkey1:60:llama3.2|qwen2.5:7b,team-b:secretkey2' });
    expect(c.apiKeys).toEqual([
      {
        name: 'team-a',
        key: 'secretkey1',
        ratePerMinute: 60,
        models: ['llama3.2:latest', 'qwen2.5:7b'],
        priorityClass: 'standard',
        weight: 1,
        tokensPerMinute: 0,
        tokensPerDay: 0,
      },
      {
        name: 'team-b',
        key: 'secretkey2',
        ratePerMinute: 0,
        models: [],
        priorityClass: 'standard',
        weight: 1,
        tokensPerMinute: 0,
        tokensPerDay: 0,
      },
    ]);
  });

  it('has four priority classes by default, standard for everyone, sheddable never waiting', () => {
    expect(loadBalancerConfig(base).priority).toEqual({
      classes: ['interactive', 'standard', 'batch', 'sheddable'],
      defaultClass: 'standard',
      sheddable: ['sheddable'],
      shedAt: 0,
      minShareEvery: 10,
    });
    const c = loadBalancerConfig({
      ...base,
      PRIORITY_CLASSES: 'gold, bronze',
      SHEDDABLE_CLASSES: '',
      QUEUE_SHED_AT: '50',
      PRIORITY_MIN_SHARE_EVERY: '4',
    });
    expect(c.priority).toEqual({
      classes: ['gold', 'bronze'],
      defaultClass: 'gold',
      sheddable: [],
      shedAt: 50,
      minShareEvery: 4,
    });
  });

  it('gives keys a class, weight and token quotas from API_KEY_LIMITS or the file', () => {
    const c = loadBalancerConfig({
      ...base,
      API_KEYS: 'chat:secretkey1,jobs:secretkey2,other:secretkey3',
      API_KEY_LIMITS: 'chat:class=interactive,tokensPerMinute=20000; jobs:class=batch,weight=2.5,tokensPerDay=1000000',
    });
    expect(
      c.apiKeys.map(({ name, priorityClass, weight, tokensPerMinute, tokensPerDay }) => ({
        name,
        priorityClass,
        weight,
        tokensPerMinute,
        tokensPerDay,
      })),
    ).toEqual([
      { name: 'chat', priorityClass: 'interactive', weight: 1, tokensPerMinute: 20000, tokensPerDay: 0 },
      { name: 'jobs', priorityClass: 'batch', weight: 2.5, tokensPerMinute: 0, tokensPerDay: 1000000 },
      { name: 'other', priorityClass: 'standard', weight: 1, tokensPerMinute: 0, tokensPerDay: 0 },
    ]);
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'keys.json');
    writeFileSync(
      file,
      JSON.stringify({
        apiKeys: [{ name: 'nightly', key: 'secretkey4', class: 'batch', weight: 3, tokensPerMinute: 500 }],
      }),
    );
    expect(loadBalancerConfig({ ...base, BALANCER_CONFIG: file }).apiKeys[0]).toMatchObject({
      name: 'nightly',
      priorityClass: 'batch',
      weight: 3,
      tokensPerMinute: 500,
      tokensPerDay: 0,
    });
    writeFileSync(file, JSON.stringify({ apiKeys: [{ name: 'nightly', key: 'secretkey4', class: 'urgent' }] }));
    expect(() => loadBalancerConfig({ ...base, BALANCER_CONFIG: file })).toThrow(
      'BALANCER_CONFIG apiKeys[0].class="urgent" must be one of PRIORITY_CLASSES (interactive, standard, batch, sheddable)',
    );
    writeFileSync(file, JSON.stringify({ apiKeys: [{ name: 'nightly', key: 'secretkey4', tokensPerDay: -5 }] }));
    expect(() => loadBalancerConfig({ ...base, BALANCER_CONFIG: file })).toThrow(
      'BALANCER_CONFIG apiKeys[0].tokensPerDay=-5 must be an integer >= 0',
    );
  });

  it.each([
    [{ PRIORITY_CLASSES: 'a,,b' }, /PRIORITY_CLASSES="a,,b" must be a comma-separated list/],
    [{ PRIORITY_CLASSES: 'a,b,a' }, /PRIORITY_CLASSES="a,b,a" must not name a class twice/],
    [{ DEFAULT_PRIORITY_CLASS: 'vip' }, /DEFAULT_PRIORITY_CLASS="vip" must be one of PRIORITY_CLASSES/],
    [{ SHEDDABLE_CLASSES: 'spare' }, /SHEDDABLE_CLASSES="spare" must name classes of PRIORITY_CLASSES/],
    [{ PRIORITY_MIN_SHARE_EVERY: '1' }, /PRIORITY_MIN_SHARE_EVERY="1" must be an integer between 2 and 1000/],
    [{ QUEUE_SHED_AT: '-1' }, /QUEUE_SHED_AT="-1"/],
    [
      { API_KEYS: 'a:secretkey1', API_KEY_LIMITS: 'a:class=gold' },
      /API_KEY_LIMITS a.class="gold" must be one of PRIORITY_CLASSES/,
    ],
    [{ API_KEYS: 'a:secretkey1', API_KEY_LIMITS: 'a:weight=0' }, /API_KEY_LIMITS a.weight="0" must be a number > 0/],
    [
      { API_KEYS: 'a:secretkey1', API_KEY_LIMITS: 'a:weight=lots' },
      /API_KEY_LIMITS a.weight="lots" must be a number > 0/,
    ],
    [
      { API_KEYS: 'a:secretkey1', API_KEY_LIMITS: 'a:tokensPerMinute=1.5' },
      /API_KEY_LIMITS a.tokensPerMinute="1.5" must be an integer >= 0/,
    ],
    [
      { API_KEYS: 'a:secretkey1', API_KEY_LIMITS: 'a:speed=9' },
      /API_KEY_LIMITS a="speed=9" must be field=value with a field among class, weight/,
    ],
    [{ API_KEYS: 'a:secretkey1', API_KEY_LIMITS: 'b:weight=2' }, /API_KEY_LIMITS="b" names no key/],
    [
      { API_KEYS: 'a:secretkey1,a:secretkey2', API_KEY_LIMITS: 'a:weight=2' },
      /API_KEY_LIMITS="a" names a key name used twice/,
    ],
    [
      { API_KEYS: 'a:secretkey1', API_KEY_LIMITS: 'weight=2' },
      /API_KEY_LIMITS="weight=2" entries must be name:field=value/,
    ],
  ])('a bad priority setting %o stops start-up naming it', (env, message) => {
    expect(() => loadBalancerConfig({ ...base, ...env })).toThrow(ConfigError);
    expect(() => loadBalancerConfig({ ...base, ...env })).toThrow(message);
  });

  it('normalises model names the way Ollama does', () => {
    expect(normaliseModelName('llama3.2')).toBe('llama3.2:latest');
    expect(normaliseModelName('llama3.2:latest')).toBe('llama3.2:latest');
    expect(normaliseModelName('registry.local:5000/ns/model')).toBe('registry.local:5000/ns/model:latest');
    expect(normaliseModelName('ns/model:7b')).toBe('ns/model:7b');
  });
});

describe('BACKEND_PARALLEL and slot learning (zero configuration)', () => {
  it("unset (or blank): every backend's slots are learned, starting from Ollama's default of 1", () => {
    for (const env of [base, { ...base, BACKEND_PARALLEL: '' }, { ...base, BACKEND_PARALLEL: '  ' }]) {
      const c = loadBalancerConfig(env);
      expect(c.backendParallel).toBeNull();
      // modelConcurrency 0: no cap of its own, the learned one (one beyond the slots proven) applies.
      for (const b of c.backends) expect(b).toMatchObject({ learnSlots: true, parallel: 1, modelConcurrency: 0 });
    }
  });

  it('set: that many slots, as told, and nothing learned', () => {
    const c = loadBalancerConfig({ ...base, BACKEND_PARALLEL: '3' });
    expect(c.backendParallel).toBe(3);
    for (const b of c.backends) expect(b).toMatchObject({ learnSlots: false, parallel: 3, modelConcurrency: 3 });
  });

  it('a backend of BALANCER_CONFIG that says parallel is not learned; a modelConcurrency alone caps what is learned', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
    const file = join(dir, 'backends.json');
    writeFileSync(
      file,
      JSON.stringify({
        backends: [
          { name: 'told', url: 'http://h:1', parallel: 2 },
          { name: 'capped', url: 'http://h:2', modelConcurrency: 2 },
          { name: 'silent', url: 'http://h:3', maxLoadedModels: 1 },
        ],
      }),
    );
    const learned = loadBalancerConfig({ BALANCER_CONFIG: file });
    expect(learned.backends.map((b) => [b.name, b.learnSlots, b.parallel, b.modelConcurrency])).toEqual([
      ['told', false, 2, 2],
      ['capped', true, 1, 2],
      ['silent', true, 1, 0],
    ]);
    const told = loadBalancerConfig({ BALANCER_CONFIG: file, BACKEND_PARALLEL: '4' });
    expect(told.backends.map((b) => [b.name, b.learnSlots, b.parallel])).toEqual([
      ['told', false, 2],
      ['capped', false, 4],
      ['silent', false, 4],
    ]);
  });

  it.each(['0', 'abc', '1.5', '2000'])('a bad BACKEND_PARALLEL (%s) stops start-up naming the setting', (v) => {
    expect(() => loadBalancerConfig({ ...base, BACKEND_PARALLEL: v })).toThrow(ConfigError);
    expect(() => loadBalancerConfig({ ...base, BACKEND_PARALLEL: v })).toThrow(`BACKEND_PARALLEL="${v}"`);
  });
});
