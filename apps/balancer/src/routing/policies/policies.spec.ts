import { Backend } from '../../fleet/backend';
import { BackendConfig } from '../../config/balancer-config';
import {
  LeastConnectionsPolicy,
  LeastLoadedPolicy,
  PredictivePolicy,
  RoundRobinPolicy,
  RouteRequest,
  SeedScorePolicy,
} from './index';

const GB = 1e9;
function backend(name: string, over: Partial<BackendConfig> = {}): Backend {
  return new Backend({
    name,
    url: `http://${name}:11434`,
    weight: 1,
    parallel: 1,
    maxConcurrency: 0,
    modelConcurrency: 1,
    maxLoadedModels: 0,
    ...over,
  });
}
const ctx = { agentStaleMs: 10_000 };
const req = (model: string | null, extra: Partial<RouteRequest> = {}): RouteRequest => ({
  model,
  modelSize: 0,
  sessionKey: null,
  now: Date.now(),
  ...extra,
});

function withGpu(b: Backend, util: number, freeBytes = 40 * GB): Backend {
  b.agent = {
    nvml: { available: true, error: null },
    readingAgeMs: 0,
    host: {
      gpuCount: 1,
      meanUtilizationGpu: util,
      memoryTotalBytes: 80 * GB,
      memoryUsedBytes: 80 * GB - freeBytes,
      memoryFreeBytes: freeBytes,
      hottestGpu: null,
      leastLoadedGpu: 0,
    },
  } as any;
  b.agentAt = Date.now();
  return b;
}

function load(b: Backend, model: string, size = 2 * GB): void {
  b.modelsOnDisk.set(model, { name: model, size, raw: {} });
  b.modelsLoaded.set(model, { name: model, size, sizeVram: size, expiresAt: Date.now() + 300_000, raw: {} });
  b.inventoryAt = Date.now();
}

describe('round-robin', () => {
  it('rotates and honours weights', () => {
    const a = backend('a');
    const b = backend('b', { weight: 2 });
    const p = new RoundRobinPolicy();
    const picks = Array.from({ length: 6 }, () => p.pick([a, b]).backend.name);
    expect(picks.filter((n) => n === 'a')).toHaveLength(2);
    expect(picks.filter((n) => n === 'b')).toHaveLength(4);
  });
});

describe('least-connections', () => {
  it('picks the fewest in flight', () => {
    const a = backend('a');
    const b = backend('b');
    a.acquire('m:latest');
    a.acquire('m:latest');
    b.acquire('m:latest');
    expect(new LeastConnectionsPolicy().pick([a, b]).backend.name).toBe('b');
  });
});

describe('least-loaded', () => {
  it('prefers the idle GPU at equal in-flight, and treats a stale reading as unknown (never idle)', () => {
    const busy = withGpu(backend('busy'), 95);
    const idle = withGpu(backend('idle'), 10);
    const p = new LeastLoadedPolicy();
    for (let i = 0; i < 4; i++) expect(p.pick([busy, idle], req('m:latest'), ctx).backend.name).toBe('idle');
    idle.agentAt = Date.now() - 60_000; // stale: unknown counts as half busy (0.5) < 0.95
    const unknown = backend('unknown');
    expect(p.pick([busy, unknown], req('m:latest'), ctx).backend.name).toBe('unknown');
    const calm = withGpu(backend('calm'), 20);
    expect(p.pick([calm, idle], req('m:latest'), ctx).backend.name).toBe('calm');
  });
});

describe('seed-score (active_requests * 10 + gpu_utilization)', () => {
  it('reproduces the original scoring', () => {
    const a = withGpu(backend('a'), 5);
    const b = withGpu(backend('b'), 30);
    a.acquire(null);
    a.acquire(null);
    a.acquire(null); // 35
    b.acquire(null); // 40
    expect(new SeedScorePolicy().pick([a, b], req(null), ctx).backend.name).toBe('a');
    a.acquire(null); // 45
    expect(new SeedScorePolicy().pick([a, b], req(null), ctx).backend.name).toBe('b');
  });
});

describe('predictive', () => {
  const p = new PredictivePolicy();
  it('prefers a warm backend over a cold load when the warm one is free', () => {
    const warm = backend('warm');
    const cold = backend('cold');
    load(warm, 'm:latest');
    cold.modelsOnDisk.set('m:latest', { name: 'm:latest', size: 2 * GB, raw: {} });
    cold.inventoryAt = Date.now();
    const pick = p.pick([cold, warm], req('m:latest'), ctx);
    expect(pick.backend.name).toBe('warm');
    expect(pick.reason).toBe('warm');
  });

  it('cold-loads elsewhere when the warm backend is backed up longer than the load takes', () => {
    const warm = backend('warm');
    const cold = backend('cold');
    load(warm, 'm:latest');
    cold.modelsOnDisk.set('m:latest', { name: 'm:latest', size: 2 * GB, raw: {} });
    warm.learned.noteServiceTime('m:latest', 4000);
    for (let i = 0; i < 3; i++) warm.acquire('m:latest'); // 3 ahead x 4 s on 1 slot = ~12 s wait
    const pCold = p.predict(cold, req('m:latest'), ctx);
    const pWarm = p.predict(warm, req('m:latest'), ctx);
    expect(pCold.loadMs).toBeCloseTo(2000, -2);
    expect(pWarm.waitMs).toBeGreaterThan(pCold.totalMs);
    const pick = p.pick([warm, cold], req('m:latest'), ctx);
    expect(pick.backend.name).toBe('cold');
    expect(pick.reason).toBe('cold-load');
  });

  it('learns load speed: a slow loader makes waiting for the warm server the better choice', () => {
    const warm = backend('warm');
    const cold = backend('cold');
    load(warm, 'm:latest');
    cold.modelsOnDisk.set('m:latest', { name: 'm:latest', size: 2 * GB, raw: {} });
    cold.learned.loadMsPerByte.add(20_000 / (2 * GB)); // observed: 20 s to load 2 GB there
    warm.learned.noteServiceTime('m:latest', 4000);
    for (let i = 0; i < 3; i++) warm.acquire('m:latest');
    expect(p.pick([warm, cold], req('m:latest'), ctx).backend.name).toBe('warm');
  });

  it('charges for evicting a busy or recently used model', () => {
    const full = backend('full', { maxLoadedModels: 1 });
    const empty = backend('empty', { maxLoadedModels: 1 });
    load(full, 'other:latest', 4 * GB);
    full.acquire('other:latest');
    for (const b of [full, empty]) b.modelsOnDisk.set('m:latest', { name: 'm:latest', size: 2 * GB, raw: {} });
    const pf = p.predict(full, req('m:latest'), ctx);
    const pe = p.predict(empty, req('m:latest'), ctx);
    expect(pf.evictMs).toBeGreaterThan(0);
    expect(pe.evictMs).toBe(0);
    expect(p.pick([full, empty], req('m:latest'), ctx).backend.name).toBe('empty');
  });

  it('uses a fresh agent reading of free VRAM to see that a model will not fit', () => {
    const tight = withGpu(backend('tight'), 10, 1 * GB);
    load(tight, 'other:latest', 4 * GB);
    tight.modelLastUsed.set('other:latest', Date.now());
    tight.modelsOnDisk.set('m:latest', { name: 'm:latest', size: 2 * GB, raw: {} });
    expect(p.predict(tight, req('m:latest'), ctx).evictMs).toBeGreaterThan(0);
  });

  it('sends a long answer to the fast GPU even when it must wait, and a short one to a free slow GPU', () => {
    const fast = backend('fast');
    const slow = backend('slow');
    for (const b of [fast, slow]) load(b, 'm:latest');
    // Learned: fast makes 150 tokens/s, slow 50 (from Ollama's eval_count / eval_duration).
    fast.learned.noteTokens('m:latest', 150, 1e9, undefined, undefined);
    slow.learned.noteTokens('m:latest', 50, 1e9, undefined, undefined);
    const now = Date.now();
    fast.acquire('m:latest', now + 400); // its only slot frees in 0.4 s
    const long = p.pick([fast, slow], req('m:latest', { expectedTokens: 100, now }), ctx);
    expect(long.backend.name).toBe('fast'); // 0.4 + 0.67 s beats 2 s on slow
    const short = p.pick([fast, slow], req('m:latest', { expectedTokens: 10, now }), ctx);
    expect(short.backend.name).toBe('slow'); // 0.2 s on slow beats 0.4 + 0.07 s on fast
    expect(long.completionMs).toBeGreaterThan(long.predictedMs!);
  });
});
