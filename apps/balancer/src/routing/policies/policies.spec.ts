import { Backend, BUSY_BACKOFF_MS } from '../../fleet/backend';
import { BackendConfig } from '../../config/balancer-config';
import {
  LeastConnectionsPolicy,
  LeastLoadedPolicy,
  PredictivePolicy,
  probeMissOdds,
  rankMs,
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

describe('predictive, on a fleet it learns (zero configuration)', () => {
  const ALPHA = 'alpha:latest';
  const BETA = 'beta:latest';
  const GAMMA = 'gamma:latest';
  const SVC = 1000;
  /**
   * The cluster in miniature: `warm` holds alpha and is busy (its one slot frees in 5 s);
   * `full` holds idle beta in its room for one and has alpha on disk, 1 s to load: loading alpha
   * there is predicted sooner (about 2 s against 6 s), but evicts beta.
   */
  function fleet(opts: { betaBusy?: boolean; betaElsewhere?: boolean } = {}) {
    const now = Date.now();
    const warm = backend('warm');
    const full = backend('full', { maxLoadedModels: 1 });
    const spare = backend('spare');
    load(warm, ALPHA);
    load(full, BETA);
    full.modelsOnDisk.set(ALPHA, { name: ALPHA, size: 2 * GB, raw: {} });
    full.learned.loadMsPerByte.add(500 / GB);
    if (opts.betaElsewhere) load(spare, BETA);
    for (const b of [warm, full, spare]) {
      b.learned.noteServiceTime(ALPHA, SVC);
      b.learned.noteServiceTime(BETA, SVC);
    }
    warm.acquire(ALPHA, now + 5000);
    if (opts.betaBusy) full.acquire(BETA, now + 5000);
    full.modelLastUsed.set(BETA, now - 1000);
    return { warm, full, spare, now };
  }
  const ctxWith = (demand: Record<string, number | null>, available: Backend[] = []) => ({
    agentStaleMs: 10_000,
    demandPerS: (m: string) => demand[m] ?? 0,
    available: () => available,
  });
  const p = new PredictivePolicy();

  it('keeps to a warm holder rather than evict for a sooner load, unless the warm holders are overloaded', () => {
    const { warm, full, now } = fleet();
    const calm = ctxWith({ [ALPHA]: 0.1, [BETA]: 0 }); // alpha: 0.1/s against 1/s of capacity
    const cold = p.predict(full, req(ALPHA, { now }), calm);
    const hot = p.predict(warm, req(ALPHA, { now }), calm);
    expect(cold.warm).toBe(false);
    expect(cold.evicts).toBe(true);
    expect(cold.totalMs).toBeLessThan(hot.totalMs / 2);
    expect(p.pick([warm, full], req(ALPHA, { now }), calm).backend.name).toBe('warm');
    // 5 alpha/s against 1/s of capacity: another copy pays for itself (beta nobody asks for).
    const pick = p.pick([warm, full], req(ALPHA, { now }), ctxWith({ [ALPHA]: 5, [BETA]: 0 }));
    expect(pick.backend.name).toBe('full');
    expect(pick.reason).toBe('cold-load');
  });

  it('prices the request that probes for one more slot at the odds the probes of the fleet showed (even before any): a server whose slots are being learned gets the chance to show them', () => {
    const now = Date.now();
    // fast: 1 s per answer, one slot proven, one answer running until 1.4 s from now. slow: idle,
    // 1.8 s per answer. Priced at the full wait, fast (2.4 s) loses to slow and never shows a
    // second slot; with no probe anywhere yet the probe is priced at even odds, half the wait
    // (0.7 s + 1 s), which beats slow.
    const fast = backend('fast', { learnSlots: true, modelConcurrency: 0 });
    const slow = backend('slow', { learnSlots: true, modelConcurrency: 0 });
    for (const b of [fast, slow]) load(b, ALPHA);
    fast.learned.noteServiceTime(ALPHA, 1000);
    slow.learned.noteServiceTime(ALPHA, 1800);
    fast.acquire(ALPHA, now + 1400);
    expect(fast.slotsFor(ALPHA)).toBe(1);
    expect(fast.slotsAtMost(ALPHA)).toBe(2);
    const c = ctxWith({ [ALPHA]: 0.5 });
    expect(p.predict(fast, req(ALPHA, { now }), c).waitMs).toBeCloseTo(700, -1);
    expect(p.pick([fast, slow], req(ALPHA, { now }), c).backend.name).toBe('fast');
    // Only the probe: a request behind it (one waiting ahead) pays its full wait.
    expect(p.predict(fast, req(ALPHA, { now, queuedAhead: 1 }), c).waitMs).toBeGreaterThan(1400);
    // The odds come from how the fleet's probes turned out. Two servers that showed 3 and 2 slots
    // (three probes found a slot, none missed): the probe pays a fifth of the wait.
    const shown = [3, 2].map((n, i) => {
      const o = backend(`shown${i}`, { learnSlots: true, modelConcurrency: 0 });
      o.learned.slotLearner(BETA).lower = n;
      return o;
    });
    expect(probeMissOdds(3, 0)).toBeCloseTo(1 / 5);
    const hits = ctxWith({ [ALPHA]: 0.5 }, [fast, slow, ...shown]);
    expect(p.predict(fast, req(ALPHA, { now }), hits).waitMs).toBeCloseTo(1400 / 5, -1);
    // Three default one-slot servers whose probes each found a ceiling: most of the wait, and the
    // idle slow server is taken.
    const ones = [0, 1, 2].map((i) => {
      const o = backend(`one${i}`, { learnSlots: true, modelConcurrency: 0 });
      o.learned.slotLearner(ALPHA).upper = 1;
      return o;
    });
    const misses = ctxWith({ [ALPHA]: 0.5 }, [fast, slow, ...ones]);
    expect(p.predict(fast, req(ALPHA, { now }), misses).waitMs).toBeCloseTo((1400 * 4) / 5, -1);
    expect(p.pick([fast, slow], req(ALPHA, { now }), misses).backend.name).toBe('slow');
    // Once Ollama's counters showed that one slot is all there is, the full wait again: slow wins.
    fast.learned.slotLearner(ALPHA).upper = 1;
    expect(fast.slotsAtMost(ALPHA)).toBe(1);
    expect(p.predict(fast, req(ALPHA, { now }), c).waitMs).toBeCloseTo(1400, -1);
    expect(p.pick([fast, slow], req(ALPHA, { now }), c).backend.name).toBe('slow');
    // Configured slots are not probed.
    const told = backend('told', { parallel: 1, modelConcurrency: 1 });
    load(told, ALPHA);
    told.learned.noteServiceTime(ALPHA, 1000);
    told.acquire(ALPHA, now + 1400);
    expect(p.predict(told, req(ALPHA, { now }), c).waitMs).toBeCloseTo(1400, -1);
  });

  it('ranks a wait for a busy slot with what it adds to the line behind: a free slower server is taken before the line outlasts it', () => {
    const now = Date.now();
    // fast: 1 s per answer, its one slot (configured) busy until 600 ms from now; slow: idle, 1.8 s
    // per answer. Alone, this request is done sooner on fast (0.6 + 1 = 1.6 s against 1.8 s).
    const fast = backend('fast', { parallel: 1, modelConcurrency: 1 });
    const slow = backend('slow', { parallel: 1, modelConcurrency: 1 });
    for (const b of [fast, slow]) load(b, ALPHA);
    fast.learned.noteServiceTime(ALPHA, 1000);
    slow.learned.noteServiceTime(ALPHA, 1800);
    fast.acquire(ALPHA, now + 600);
    const c = ctxWith({ [ALPHA]: 1 });
    const alone = p.predict(fast, req(ALPHA, { now }), c);
    expect(alone.totalMs).toBeLessThan(p.predict(slow, req(ALPHA, { now }), c).totalMs);
    expect(alone.lineMs).toBe(0);
    expect(p.pick([fast, slow], req(ALPHA, { now }), c).backend.name).toBe('fast');
    // Two more wait behind it in the balancer: each would start 1 s later on fast if it waits there
    // (the last done at 0.6 + 3 x 1 = 3.6 s), so it takes the free slow server.
    const lined = p.predict(fast, req(ALPHA, { now, queuedBehind: 2 }), c);
    expect(lined.totalMs).toBeCloseTo(alone.totalMs, -1);
    expect(lined.lineMs).toBeCloseTo(2000, -1);
    expect(rankMs(lined)).toBeCloseTo(3600, -1);
    const pick = p.pick([fast, slow], req(ALPHA, { now, queuedBehind: 2 }), c);
    expect(pick.backend.name).toBe('slow');
    expect(pick.reason).toBe('warm');
    // A free slot holds up nobody.
    const idle = backend('idle', { parallel: 1, modelConcurrency: 1 });
    load(idle, ALPHA);
    idle.learned.noteServiceTime(ALPHA, 1000);
    expect(p.predict(idle, req(ALPHA, { now, queuedBehind: 5 }), c).lineMs).toBe(0);
    // Nor does the request that probes for a slot not shown yet (it starts at once if the slot exists).
    const learning = backend('learning', { learnSlots: true, modelConcurrency: 0 });
    load(learning, ALPHA);
    learning.learned.noteServiceTime(ALPHA, 1000);
    learning.acquire(ALPHA, now + 600);
    expect(learning.slotsAtMost(ALPHA)).toBe(2);
    expect(p.predict(learning, req(ALPHA, { now, queuedBehind: 5 }), c).lineMs).toBe(0);
  });

  it("prices evicting a model by its demand and its other holders' capacity", () => {
    const covered = fleet({ betaElsewhere: true });
    const uncovered = fleet();
    const demand = { [ALPHA]: 5, [BETA]: 0.5 };
    // beta at 0.5/s: its other holder serves 1/s (covered), or there is none (its traffic would reload it).
    const pc = p.predict(covered.full, req(ALPHA, { now: covered.now }), ctxWith(demand, [covered.spare]));
    const pu = p.predict(uncovered.full, req(ALPHA, { now: uncovered.now }), ctxWith(demand, [uncovered.spare]));
    expect(pc.evicts && pu.evicts).toBe(true);
    expect(pc.evictMs).toBeGreaterThan(0);
    expect(pu.evictMs).toBeGreaterThan(10 * pc.evictMs);
    const c = covered;
    expect(p.pick([c.warm, c.full], req(ALPHA, { now: c.now }), ctxWith(demand, [c.spare])).backend.name).toBe('full');
    const u = uncovered;
    expect(p.pick([u.warm, u.full], req(ALPHA, { now: u.now }), ctxWith(demand, [u.spare])).backend.name).toBe('warm');
    // A model nobody asks for costs nothing to evict.
    const idle = p.predict(u.full, req(ALPHA, { now: u.now }), ctxWith({ [ALPHA]: 5, [BETA]: 0 }));
    expect(idle.evictMs).toBe(0);
    // A holder that has not shown its service time for beta is no cover (it may be far slower than
    // a default): the eviction is priced as uncovered, a reload and its queue (3 loads of beta and
    // 2 services: 5 s). But beta's traffic has a warm server to go to: not a cascade, not out of
    // reach (a heavier model's queue may then still pay for it, see below).
    const unshown = fleet({ betaElsewhere: true });
    unshown.spare.learned.serviceMs.delete(BETA);
    const ps = p.predict(unshown.full, req(ALPHA, { now: unshown.now }), ctxWith(demand, [unshown.spare]));
    expect(ps.evictMs).toBeCloseTo(3 * 1000 + 2 * SVC, -1);
    expect(ps.evictMs).toBeGreaterThan(10 * pc.evictMs);
    expect(ps.amortizable).toBe(true);
    expect(pu.evictMs).toBeGreaterThan(100 * ps.evictMs);
    // Alpha at 5/s is five times past its warm holder's capacity: spread over the requests the load
    // serves, that price is paid (before, beta's unshown holder made it a cascade and alpha queued).
    const s = unshown;
    expect(p.pick([s.warm, s.full], req(ALPHA, { now: s.now }), ctxWith(demand, [s.spare])).backend.name).toBe('full');
    // At a demand its warm holder keeps up with, the warm holder is kept.
    const calm = { [ALPHA]: 0.5, [BETA]: 0.5 };
    expect(p.pick([s.warm, s.full], req(ALPHA, { now: s.now }), ctxWith(calm, [s.spare])).backend.name).toBe('warm');
    // Its copy there only loading (not shown, not loaded yet), on a server known to be full: the
    // same, not a cascade.
    const loading = fleet();
    loading.spare.modelsOnDisk.set(BETA, { name: BETA, size: 2 * GB, raw: {} });
    loading.spare.learned.room.observeFull(1);
    loading.spare.noteLoadStarted(BETA, loading.now + 2000, loading.now);
    const pl = p.predict(loading.full, req(ALPHA, { now: loading.now }), ctxWith(demand, [loading.spare]));
    expect(pl.evictMs).toBeCloseTo(ps.evictMs, -1);
  });

  it('does not count on evicting a busy model where the room is known to be full', () => {
    const { warm, full, now } = fleet({ betaBusy: true });
    const overloaded = ctxWith({ [ALPHA]: 5, [BETA]: 0 });
    const cold = p.predict(full, req(ALPHA, { now }), overloaded);
    expect(cold.evicts).toBe(true);
    expect(cold.evictMs).toBeGreaterThan(p.predict(warm, req(ALPHA, { now }), overloaded).totalMs);
    expect(p.pick([warm, full], req(ALPHA, { now }), overloaded).backend.name).toBe('warm');
    // The same room learned from /api/ps (an eviction seen there) rather than configured: the same.
    const learned = backend('learned');
    load(learned, BETA);
    learned.modelsOnDisk.set(ALPHA, { name: ALPHA, size: 2 * GB, raw: {} });
    learned.learned.loadMsPerByte.add(500 / GB);
    learned.learned.noteServiceTime(ALPHA, SVC);
    learned.learned.room.observeFull(1);
    learned.acquire(BETA, now + 5000);
    expect(p.pick([warm, learned], req(ALPHA, { now }), overloaded).backend.name).toBe('warm');
  });

  it('before a full window of demand, evicts for a sooner load only when the warm holders have a queue worth half the load', () => {
    const now = Date.now();
    // `slow` holds alpha, free; `fast` (room not known yet) holds beta, busy, and has alpha on disk:
    // a 1 s load there and a 5x faster answer beat the slow warm copy by far.
    const slow = backend('slow');
    load(slow, ALPHA);
    slow.learned.noteServiceTime(ALPHA, 10 * SVC);
    const fast = backend('fast');
    load(fast, BETA);
    fast.modelsOnDisk.set(ALPHA, { name: ALPHA, size: 2 * GB, raw: {} });
    fast.learned.loadMsPerByte.add(500 / GB);
    fast.learned.noteServiceTime(ALPHA, 2 * SVC);
    fast.learned.noteServiceTime(BETA, SVC);
    fast.acquire(BETA, now + 5000);
    fast.modelLastUsed.set(BETA, now);
    const early = { agentStaleMs: 10_000, demandPerS: () => null, arrivalsPerS: () => null };
    const cold = p.predict(fast, req(ALPHA, { now }), early);
    expect(cold.evicts).toBe(true);
    expect(cold.totalMs + 1000).toBeLessThan(p.predict(slow, req(ALPHA, { now }), early).totalMs);
    // The warm copy can start it now: its overload is only assumed, beta is not gambled on a guess.
    expect(p.pick([slow, fast], req(ALPHA, { now }), early).backend.name).toBe('slow');
    // Nor when it would wait there less than half the 1 s load.
    slow.acquire(ALPHA, now + 400);
    expect(p.predict(slow, req(ALPHA, { now }), early).waitMs).toBeGreaterThan(0);
    expect(p.pick([slow, fast], req(ALPHA, { now }), early).backend.name).toBe('slow');
    slow.release(ALPHA, now + 400);
    // A queue there of 5 s: the load is taken.
    slow.acquire(ALPHA, now + 5000);
    expect(p.pick([slow, fast], req(ALPHA, { now }), early).backend.name).toBe('fast');
    // A measured overload (a full window of alpha's demand) takes it even while the warm copy is free.
    slow.release(ALPHA);
    const measured = { ...early, demandPerS: (m: string) => (m === ALPHA ? 5 : 0) };
    expect(p.pick([slow, fast], req(ALPHA, { now }), measured).backend.name).toBe('fast');
  });

  it('a load into free room is taken whenever it is sooner (nothing is evicted)', () => {
    const { warm, spare, now } = fleet();
    spare.modelsOnDisk.set(ALPHA, { name: ALPHA, size: 2 * GB, raw: {} });
    spare.learned.loadMsPerByte.add(500 / GB);
    const calm = ctxWith({ [ALPHA]: 0.1 });
    const pf = p.predict(spare, req(ALPHA, { now }), calm);
    expect([pf.warm, pf.evicts, pf.evictMs]).toEqual([false, false, 0]);
    expect(p.pick([warm, spare], req(ALPHA, { now }), calm).backend.name).toBe('spare');
  });

  it('past its warm capacity, a model loads into free room even when this one request would wait less', () => {
    const { warm, spare, now } = fleet();
    // 6 s to load on the spare server: 7 s in all, against 6 s waiting for the warm one.
    spare.modelsOnDisk.set(ALPHA, { name: ALPHA, size: 2 * GB, raw: {} });
    spare.learned.loadMsPerByte.add(3000 / GB);
    expect(p.predict(spare, req(ALPHA, { now }), ctxWith({})).totalMs).toBeGreaterThan(
      p.predict(warm, req(ALPHA, { now }), ctxWith({})).totalMs,
    );
    expect(p.pick([warm, spare], req(ALPHA, { now }), ctxWith({ [ALPHA]: 0.5 })).backend.name).toBe('warm');
    const pick = p.pick([warm, spare], req(ALPHA, { now }), ctxWith({ [ALPHA]: 5 }));
    expect([pick.backend.name, pick.reason]).toEqual(['spare', 'cold-load']);
  });

  it('weighs a load into free room against the slots a copy still loading has proven, not the most it may have', () => {
    // `loading` is loading alpha (3.8 s to go) for the one request it holds; its slots are not
    // shown (one proven, two at most). `spare` holds nothing: alpha loads there in 4.7 s, so this
    // one request is predicted sooner waiting for `loading`. At a demand past one slot's capacity
    // but within two slots', the copy under way is not enough: the load into free room (it evicts
    // nothing) is started now rather than after the burst has queued behind that one copy.
    const now = Date.now();
    const loading = backend('loading', { learnSlots: true, modelConcurrency: 0 });
    const spare = backend('spare', { learnSlots: true, modelConcurrency: 0 });
    for (const b of [loading, spare]) b.modelsOnDisk.set(ALPHA, { name: ALPHA, size: 4.7 * GB, raw: {} });
    loading.noteLoadStarted(ALPHA, now + 3800, now - 1000);
    loading.acquire(ALPHA, 0);
    expect([loading.slotsFor(ALPHA), loading.slotsAtMost(ALPHA)]).toEqual([1, 2]);
    const r = req(ALPHA, { now });
    const perSlot = 1000 / p.usualServiceMs(loading, ALPHA, r);
    const at = (arrivals: number) => ({ ...ctxWith({}), arrivalsPerS: () => arrivals });
    const pl = p.predict(loading, r, at(0));
    const ps = p.predict(spare, r, at(0));
    expect(pl).toMatchObject({ warm: true, waitMs: 3800 });
    expect([ps.warm, ps.evicts]).toEqual([false, false]);
    expect(ps.totalMs).toBeGreaterThan(pl.totalMs);
    // Past what its proven slot serves (1.5x), within what two would (0.75x): load into free room.
    const pick = p.pick([loading, spare], r, at(1.5 * perSlot));
    expect([pick.backend.name, pick.reason]).toEqual(['spare', 'cold-load']);
    // Within what its proven slot serves: wait for the copy under way.
    expect(p.pick([loading, spare], r, at(0.5 * perSlot)).backend.name).toBe('loading');
  });

  it("spreads a known victim's cost over the requests the load serves, never a guess's or a known-full room's", () => {
    const { warm, now } = fleet();
    // `maybe` holds idle beta; its room is only a lower bound (no eviction seen there yet).
    const maybe = backend('maybe');
    load(maybe, BETA);
    maybe.learned.room.observe(1);
    maybe.modelsOnDisk.set(ALPHA, { name: ALPHA, size: 2 * GB, raw: {} });
    maybe.learned.loadMsPerByte.add(500 / GB);
    maybe.learned.noteServiceTime(ALPHA, SVC);
    maybe.learned.noteServiceTime(BETA, SVC);
    maybe.modelLastUsed.set(BETA, now - 1000);
    const cands = [warm, maybe];
    // Beta at 0.5/s with no other holder: evicting it costs its traffic a reload, about as much as
    // 12 s of alpha's wait; alpha at 1.5/s against 1/s of capacity.
    const busy = ctxWith({ [ALPHA]: 1.5, [BETA]: 0.5 });
    expect(p.predict(maybe, req(ALPHA, { now }), busy).amortizable).toBe(true);
    expect(p.pick(cands, req(ALPHA, { now }), busy).backend.name).toBe('maybe');
    // Below its capacity: no eviction.
    expect(p.pick(cands, req(ALPHA, { now }), ctxWith({ [ALPHA]: 0.5, [BETA]: 0.5 })).backend.name).toBe('warm');
    // Beta's demand unknown (nobody has shown it yet): a warm model is not gambled on a guess.
    const unknown = { ...ctxWith({}), demandPerS: (m: string) => (m === ALPHA ? 1.5 : null) };
    expect(p.predict(maybe, req(ALPHA, { now }), unknown).amortizable).toBe(false);
    expect(p.pick(cands, req(ALPHA, { now }), unknown).backend.name).toBe('warm');
    // Before a full window of traffic, alpha's own arrivals and beta's tell the same.
    const early = {
      ...ctxWith({}),
      demandPerS: () => null,
      arrivalsPerS: (m: string) => ({ [ALPHA]: 1.5, [BETA]: 0.5 })[m] ?? null,
    };
    expect(p.pick(cands, req(ALPHA, { now }), early).backend.name).toBe('maybe');
    // The room known to be full (an eviction seen there): beta's traffic would cascade, out of reach.
    maybe.learned.room.observeFull(1);
    expect(p.predict(maybe, req(ALPHA, { now }), busy).amortizable).toBe(false);
    expect(p.pick(cands, req(ALPHA, { now }), busy).backend.name).toBe('warm');
    // Unless another server has beta on disk and room not known to be full: beta's traffic pays a
    // reload there (priced, spread over alpha's requests), not a cascade. Known full there too: out of reach.
    const other = backend('other');
    load(other, GAMMA);
    other.modelsOnDisk.set(BETA, { name: BETA, size: 2 * GB, raw: {} });
    const reloadable = ctxWith({ [ALPHA]: 1.5, [BETA]: 0.5 }, [warm, maybe, other]);
    expect(p.predict(maybe, req(ALPHA, { now }), reloadable).amortizable).toBe(true);
    expect(p.pick(cands, req(ALPHA, { now }), reloadable).backend.name).toBe('maybe');
    other.learned.room.observeFull(1);
    expect(p.predict(maybe, req(ALPHA, { now }), reloadable).amortizable).toBe(false);
    expect(p.pick(cands, req(ALPHA, { now }), reloadable).backend.name).toBe('warm');
  });

  it('prices a request whose runner options differ from the loaded runner as a reload', () => {
    const a = backend('a');
    const b = backend('b');
    load(a, ALPHA);
    load(b, ALPHA);
    b.modelsLoaded.get(ALPHA)!.raw = { context_length: 4096 };
    a.runnerOptions.set(ALPHA, { numCtx: 8192 });
    for (const x of [a, b]) {
      x.learned.loadMsPerByte.add(1000 / GB);
      x.learned.noteServiceTime(ALPHA, SVC);
    }
    const want8k = req(ALPHA, { runnerOptions: { numCtx: 8192 } });
    const onB = p.predict(b, want8k, ctx);
    expect(onB.warm).toBe(false);
    expect(onB.loadMs).toBeCloseTo(2000, -1);
    expect(p.predict(a, want8k, ctx)).toMatchObject({ warm: true, loadMs: 0 });
    for (let i = 0; i < 4; i++) expect(p.pick([a, b], want8k, ctx).backend.name).toBe('a');
    const want4k = req(ALPHA, { runnerOptions: { numCtx: 4096 } });
    for (let i = 0; i < 4; i++) expect(p.pick([a, b], want4k, ctx).backend.name).toBe('b');
    // Without runner options both are warm: either will do.
    const picks = new Set(Array.from({ length: 4 }, () => p.pick([a, b], req(ALPHA), ctx).backend.name));
    expect(picks).toEqual(new Set(['a', 'b']));
  });

  it("backs off a backend that answered 'server busy' so that another wins", () => {
    const a = backend('a');
    const b = backend('b');
    for (const x of [a, b]) {
      load(x, ALPHA);
      x.learned.noteServiceTime(ALPHA, SVC);
    }
    const now = Date.now();
    const before = new Set(Array.from({ length: 4 }, () => p.pick([a, b], req(ALPHA, { now }), ctx).backend.name));
    expect(before).toEqual(new Set(['a', 'b']));
    a.noteBusy(now);
    expect(p.predict(a, req(ALPHA, { now }), ctx).waitMs).toBeGreaterThanOrEqual(BUSY_BACKOFF_MS);
    for (let i = 0; i < 4; i++) expect(p.pick([a, b], req(ALPHA, { now }), ctx).backend.name).toBe('b');
    // The backoff ends.
    const later = now + BUSY_BACKOFF_MS + 1;
    const after = new Set(
      Array.from({ length: 4 }, () => p.pick([a, b], req(ALPHA, { now: later }), ctx).backend.name),
    );
    expect(after).toEqual(new Set(['a', 'b']));
  });

  it('in a queue pass, counts the waiters ahead only at the backend they chose to wait for (aheadAt)', () => {
    const a = backend('a');
    const b = backend('b');
    const now = Date.now();
    for (const x of [a, b]) {
      load(x, ALPHA);
      x.learned.noteServiceTime(ALPHA, SVC);
      x.acquire(ALPHA, now + 500); // each busy until about now + 0.5 s
    }
    const chose = new Map([['a', 2]]); // two waiters ahead chose to wait for a
    const pa = p.predict(a, req(ALPHA, { now, queuedAhead: 2, aheadAt: chose }), ctx);
    const pb = p.predict(b, req(ALPHA, { now, queuedAhead: 2, aheadAt: chose }), ctx);
    expect(pb.waitMs).toBeLessThan(pa.waitMs);
    for (let i = 0; i < 4; i++)
      expect(p.pick([a, b], req(ALPHA, { now, queuedAhead: 2, aheadAt: chose }), ctx).backend.name).toBe('b');
    // Without it, the waiters ahead count against every backend alike.
    const qa = p.predict(a, req(ALPHA, { now, queuedAhead: 2 }), ctx);
    const qb = p.predict(b, req(ALPHA, { now, queuedAhead: 2 }), ctx);
    expect(qa.waitMs).toBe(qb.waitMs);
    expect(qb.waitMs).toBeGreaterThan(pb.waitMs);
  });

  it('counts a load under way as warm, with the rest of it as the wait', () => {
    const a = backend('a');
    a.modelsOnDisk.set(ALPHA, { name: ALPHA, size: 2 * GB, raw: {} });
    a.learned.noteServiceTime(ALPHA, SVC);
    const now = Date.now();
    a.noteLoadStarted(ALPHA, now + 1500, now);
    const pa = p.predict(a, req(ALPHA, { now }), ctx);
    expect(pa).toMatchObject({ warm: true, loadMs: 0, waitMs: 1500 });
  });

  it("prices a warm server that has not shown its speed at the fleet's median, so it is tried once a known one would queue", () => {
    const now = Date.now();
    // known: 200 tokens/s, its one slot busy for another 600 ms. untried: alpha warm, nothing
    // learned. At the fixed default (30 tokens/s: 300 + 2000 ms for 60 tokens) untried loses to
    // waiting for known (600 + 100 + 300 ms) and never gets a request; at the fleet's median
    // (known's 200 tokens/s, its 100 ms to first token: 400 ms) it is tried.
    const known = backend('known', { parallel: 1, modelConcurrency: 1 });
    const untried = backend('untried', { parallel: 1, modelConcurrency: 1 });
    for (const b of [known, untried]) load(b, ALPHA);
    known.learned.noteTokens(ALPHA, 200, 1e9, undefined, undefined);
    known.learned.ttftMs.add(100);
    known.acquire(ALPHA, now + 600);
    const r = req(ALPHA, { now, expectedTokens: 60 });
    const alone = { ...ctx, available: () => [untried] };
    expect(p.predict(untried, r, alone).totalMs).toBeCloseTo(2300, -1);
    expect(p.pick([known, untried], r, alone).backend.name).toBe('known');
    const fleetCtx = { ...ctx, available: () => [known, untried] };
    expect(p.predict(untried, r, fleetCtx).totalMs).toBeCloseTo(400, -1);
    expect(p.pick([known, untried], r, fleetCtx).backend.name).toBe('untried');
    // Only for the one request that will show its speed: with that one running, the defaults again.
    untried.acquire(ALPHA, now + 400);
    expect(p.predict(untried, r, fleetCtx).totalMs).toBeGreaterThan(2300);
    untried.release(ALPHA, now + 400);
    // Nor where it would have to load the model first: a cold server keeps the defaults.
    const cold = backend('cold', { parallel: 1, modelConcurrency: 1 });
    cold.modelsOnDisk.set(ALPHA, { name: ALPHA, size: 2 * GB, raw: {} });
    expect(p.predict(cold, r, { ...ctx, available: () => [known, cold] }).serviceMs).toBeCloseTo(2300, -1);
    // What it shows is its own: once it has shown 20 tokens/s, it is priced at that.
    untried.learned.noteTokens(ALPHA, 20, 1e9, undefined, undefined);
    expect(p.predict(untried, r, fleetCtx).totalMs).toBeCloseTo(100 + 3000, -1);
    expect(p.pick([known, untried], r, fleetCtx).backend.name).toBe('known');
  });

  it('never prices a load cheaper than the slowest load any backend has shown', () => {
    const fresh = backend('fresh');
    fresh.modelsOnDisk.set(ALPHA, { name: ALPHA, size: 2 * GB, raw: {} });
    const slowest = 5000 / GB; // 5 s per GB seen elsewhere
    const pa = p.predict(fresh, req(ALPHA), { ...ctx, provenLoadMsPerByte: () => slowest });
    expect(pa.loadMs).toBeCloseTo(10_000, -1);
    // Its own speed, once shown, is its own.
    fresh.learned.loadMsPerByte.add(250 / GB);
    expect(p.predict(fresh, req(ALPHA), { ...ctx, provenLoadMsPerByte: () => slowest }).loadMs).toBeCloseTo(500, -1);
  });
});
