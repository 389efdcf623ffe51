import { generateCluster, RandomCluster } from './random-cluster';
import { PlannedRequest, ScenarioBackend } from './scenario';
import { greedyPolicy, modelServiceMs, oracleRatePolicy, poolsPolicy, runModel, runRollout } from './offline-model';

const A = 'alpha:latest';
const B = 'beta:latest';

function backend(name: string, over: Partial<ScenarioBackend> = {}): ScenarioBackend {
  return {
    name,
    tokensPerSecond: 100,
    promptTokensPerSecond: 1000,
    numParallel: 1,
    vramGB: 10,
    maxLoadedModels: 1,
    loadMsPerGB: 1000,
    models: [A, B],
    loaded: [A],
    ...over,
  };
}

/** A hand-made cluster: 2 GB alpha, 1 GB beta; `expert` as nginx weights per model. */
function cluster(backends: ScenarioBackend[], expert: RandomCluster['expert']): RandomCluster {
  return {
    scenario: {
      name: 'test',
      description: '',
      seed: 1,
      models: [
        { name: A, sizeGB: 2 },
        { name: B, sizeGB: 1 },
      ],
      backends,
      workload: {
        phases: [{ durationS: 1, ratePerS: 1 }],
        mix: [{ model: A, weight: 1 }],
        promptTokens: { min: 100, max: 100 },
        outputTokens: { min: 100, max: 100 },
        stream: true,
        sessions: { count: 0, share: 0 },
      },
      pools: {},
      smokeDurationS: 1,
      targets: { p95VsPools: 1 },
    },
    expert,
    plan: {},
    allWarm: false,
    expertLoads: 0,
    utilization: 0,
    perModel: {},
    meanOutputTokens: 100,
    summary: '',
  };
}

/** Requests of 100 prompt and 100 output tokens (1.1 s on a default backend) at these times. */
const plan = (reqs: [number, string][]): PlannedRequest[] =>
  reqs.map(([atMs, model], i) => ({ i, atMs, model, promptTokens: 100, outputTokens: 100, session: null, prompt: '' }));

const latencies = (r: ReturnType<typeof runModel>) =>
  [...r.requests].sort((x, y) => x.i - y.i).map((x) => [x.backend, Math.round(x.doneAt! - x.atMs)]);

describe('offline model of the random clusters', () => {
  it('serves a loaded model at its service time, queues past its slots, loads and evicts as the simulator does', () => {
    const c = cluster([backend('h1', { numParallel: 2 })], {
      [A]: [{ name: 'h1', weight: 1 }],
      [B]: [{ name: 'h1', weight: 1 }],
    });
    expect(modelServiceMs(c.scenario.backends[0], { promptTokens: 100, outputTokens: 100 })).toBe(1100);
    const r = runModel(
      c,
      poolsPolicy,
      // Three at once on two slots; then beta (room 1: alpha is evicted once idle, 1 GB loads in 1 s); then alpha again.
      plan([
        [0, A],
        [0, A],
        [0, A],
        [3000, B],
        [6000, A],
      ]),
    );
    expect(latencies(r)).toEqual([
      ['h1', 1100],
      ['h1', 1100],
      ['h1', 2200],
      ['h1', 1000 + 1100],
      ['h1', 2000 + 1100],
    ]);
    expect(r.loads).toBe(2);
  });

  it('holds a load back while every resident model is busy, and serves the loaded one meanwhile', () => {
    const c = cluster([backend('h1')], { [A]: [{ name: 'h1', weight: 1 }], [B]: [{ name: 'h1', weight: 1 }] });
    // Beta waits for alpha to go idle; the alpha request sent after it starts at once on alpha's slot
    // when the first is done (Ollama's fast path), and beta's load waits for that one too.
    const r = runModel(
      c,
      poolsPolicy,
      plan([
        [0, A],
        [100, B],
        [1000, A],
      ]),
    );
    expect(latencies(r)).toEqual([
      ['h1', 1100],
      ['h1', 2200 - 100 + 1000 + 1100],
      ['h1', 2200 - 1000],
    ]);
  });

  it("pools: least connections per model's upstream, ties by nginx's smooth weighted round robin", () => {
    const c = cluster([backend('h1'), backend('h2')], {
      [A]: [
        { name: 'h1', weight: 30 },
        { name: 'h2', weight: 10 },
      ],
    });
    // Far apart: every pick is a tie at 0 connections, split 3:1 as h1 h1 h2 h1 (smooth WRR).
    const apart = runModel(c, poolsPolicy, plan([0, 2000, 4000, 6000, 8000, 10000, 12000, 14000].map((t) => [t, A])));
    expect(latencies(apart).map((x) => x[0])).toEqual(['h1', 'h1', 'h2', 'h1', 'h1', 'h1', 'h2', 'h1']);
    // At once: h1 has 1 connection against weight 30, h2 none: h2; then 1/30 < 1/10: h1.
    const together = runModel(c, poolsPolicy, plan([0, 0, 0].map((t) => [t, A])));
    expect(latencies(together).map((x) => x[0])).toEqual(['h1', 'h2', 'h1']);
  });

  it('greedy: the warm server done soonest, a load into free room only when sooner, a copy on an idle server with fill', () => {
    const slow = backend('slow', { tokensPerSecond: 20 });
    const fast = backend('fast', { tokensPerSecond: 200, maxLoadedModels: 2, loaded: [] });
    const c = cluster([slow, fast], { [A]: [{ name: 'slow', weight: 1 }] });
    const reqs = plan([
      [0, A],
      [10, A],
      [20, A],
    ]);
    // slow: 0.1 + 5 s per request. fast loads alpha in 2 s and serves in 0.6 s: the first request
    // is sooner there cold (2.6 s < 5.1 s); the next two wait for that load (warm, loading).
    const g = runModel(c, greedyPolicy(), reqs);
    expect(latencies(g)).toEqual([
      ['fast', 2600],
      ['fast', 3200 - 10],
      ['fast', 3800 - 20],
    ]);
    expect(g.loads).toBe(1);
    // Nothing loaded where a load is slower than waiting: alpha takes 14 s to load on fast.
    const c2 = cluster([slow, { ...fast, loadMsPerGB: 7000 }], { [A]: [{ name: 'slow', weight: 1 }] });
    const g2 = runModel(c2, greedyPolicy(), reqs);
    expect(g2.loads).toBe(0);
    expect(latencies(g2).map((x) => x[0])).toEqual(['slow', 'slow', 'slow']);
    // With fill, the second request (waiting for slow's one slot) starts a background copy on the
    // idle fast server (ready at 14.01 s); the third is done sooner there (14.61 s) than on slow (15.3 s).
    const f = runModel(c2, greedyPolicy({ fillIdle: true }), reqs);
    expect(f.loads).toBe(1);
    expect(latencies(f).map((x) => x[0])).toEqual(['slow', 'slow', 'fast']);
  });

  it('oracle-rate: a copy into free room once the true load exceeds the loaded copies, none below', () => {
    const c = cluster([backend('h1'), backend('h2', { loaded: [] })], { [A]: [{ name: 'h1', weight: 1 }] });
    const reqs = plan([
      [0, A],
      [3000, A],
    ]);
    // h1 serves 1 x 100 tokens/s of alpha; 2 requests/s of 100 tokens ask for 200.
    c.perModel = { [A]: { ratePerS: 2, capacityPerS: 1 } };
    const over = runModel(c, oracleRatePolicy, reqs);
    expect(over.loads).toBe(1);
    // fill loads nothing here: the first request finds h1's slot free.
    expect(runModel(c, greedyPolicy({ fillIdle: true }), reqs).loads).toBe(0);
    c.perModel = { [A]: { ratePerS: 0.9, capacityPerS: 1 } };
    expect(runModel(c, oracleRatePolicy, reqs).loads).toBe(0);
  });

  it('runs a generated cluster deterministically, every request once, never where its model is not on disk', () => {
    const c = generateCluster(264146825, { durationS: 18 });
    const a = runModel(c, greedyPolicy({ fillIdle: true }));
    const b = runModel(c, greedyPolicy({ fillIdle: true }));
    expect(latencies(a)).toEqual(latencies(b));
    expect(a.requests.map((r) => r.i).sort((x, y) => x - y)).toEqual(a.requests.map((_, i) => i));
    for (const r of a.requests) {
      const s = c.scenario.backends.find((x) => x.name === r.backend)!;
      expect(s.models).toContain(r.model);
      expect(r.doneAt! - r.atMs).toBeGreaterThanOrEqual(modelServiceMs(s, r) - 1e-6);
    }
    expect(a.p95Ms).toBeGreaterThan(0);
  });

  it('rollout bound: never worse than its base, better where the future pays for a load, warm-only loads nothing new', () => {
    const score = (r: ReturnType<typeof runModel>) => r.p95Ms + r.p50Ms * 1e-3;
    // 4 hosts, alpha and beta, a ramp at 77 % (fill: 6.42 s; a copy of alpha loaded early on the
    // fastest host, which only knowing the ramp ahead justifies, brings it to 3.40 s).
    const c = generateCluster(1595265714, { durationS: 18 });
    const fill = runModel(c, greedyPolicy({ fillIdle: true }));
    const bound = runRollout(c);
    expect(score(bound)).toBeLessThan(0.7 * score(fill));
    expect(bound.loads).toBeGreaterThan(fill.loads);
    const warm = runRollout(c, undefined, { warmOnly: true });
    expect(score(warm)).toBeLessThanOrEqual(score(fill));
    expect(warm.loads).toBe(fill.loads);
    for (const r of [bound, warm]) expect(r.requests).toHaveLength(fill.requests.length);
  });
});
