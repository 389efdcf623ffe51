import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';
import { checksFor, TargetResult } from './routing';
import { parseArgs } from './main';
import { haproxyConfig, nginxConfig } from './peers';
import { clusterSeeds, generateCluster, sentLoad } from './random-cluster';
import { combineRuns, median, summarizeRandom } from './random-suite';
import { validateResults } from './report';
import { generateWorkload, parseScenario, ScenarioError } from './scenario';
import { mulberry32, percentile, summarize } from './stats';
import { barChart } from './svg';

const minimal = () => ({
  name: 'tiny',
  seed: 7,
  models: [
    { name: 'llama3.2', sizeGB: 2 },
    { name: 'qwen2.5:7b', sizeGB: 4 },
  ],
  backends: [
    { name: 'a', tokensPerSecond: 50, numParallel: 2, vramGB: 8, maxLoadedModels: 1, loaded: ['llama3.2'] },
    { name: 'b', tokensPerSecond: 150, numParallel: 2, vramGB: 8, maxLoadedModels: 1, loaded: ['qwen2.5:7b'] },
  ],
  workload: {
    phases: [
      { durationS: 5, ratePerS: 4 },
      { durationS: 5, ratePerS: 8 },
    ],
    mix: [
      { model: 'llama3.2', weight: 3 },
      { model: 'qwen2.5:7b', weight: 1 },
    ],
    outputTokens: { min: 10, max: 20 },
    sessions: { count: 5, share: 0.5 },
  },
});

describe('percentiles', () => {
  it('uses the nearest rank', () => {
    const v = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
    expect(percentile(v, 50)).toBe(50);
    expect(percentile(v, 95)).toBe(95);
    expect(percentile(v, 99)).toBe(99);
    expect(percentile(v, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it('summarises mean and tail', () => {
    const s = summarize([1, 2, 3, 4, 100]);
    expect(s).toEqual({ count: 5, mean: 22, p50: 3, p95: 100, p99: 100, max: 100 });
  });
});

describe('scenario parsing', () => {
  it('fills defaults and normalises model names', () => {
    const sc = parseScenario(minimal(), 'tiny.json');
    expect(sc.backends[0].models).toEqual(['llama3.2:latest', 'qwen2.5:7b']);
    expect(sc.backends[0].promptTokensPerSecond).toBe(2000);
    expect(sc.workload.stream).toBe(true);
    expect(sc.pools).toEqual({ 'llama3.2:latest': ['a'], 'qwen2.5:7b': ['b'] });
    expect(sc.targets).toEqual({ p95VsPools: 1 });
  });

  it.each([
    [
      (s: any) => (s.backends[1].tokensPerSecond = 'fast'),
      /tiny\.json: backends\[1\]\.tokensPerSecond must be a number > 0 and <= 10000000 \(got "fast"\)/,
    ],
    [(s: any) => (s.backends[0].numParallel = 1.5), /backends\[0\]\.numParallel must be an integer >= 1/],
    [(s: any) => (s.workload.mix[1].model = 'gemma'), /workload\.mix\[1\]\.model must name a model listed in models/],
    [
      (s: any) => (s.backends[0].loaded = ['llama3.2', 'qwen2.5:7b']),
      /backends\[0\]\.loaded holds more than maxLoadedModels/,
    ],
    [(s: any) => (s.workload.phases = []), /workload\.phases must be an array with at least 1/],
    [
      (s: any) => (s.workload.outputTokens = { min: 10, max: 5 }),
      /workload\.outputTokens\.max must be an integer >= 10/,
    ],
    [(s: any) => (s.backends[0].speed = 3), /backends\[0\]\.speed is not a known field/],
    [(s: any) => (s.pools = { llama3: ['a'] }), /pools\.llama3 \(key\) must name a model/],
    [(s: any) => (s.pools = { 'llama3.2': ['zz'] }), /pools\.llama3\.2\[0\] must name a backend/],
    [(s: any) => (s.backends[1].name = 'a'), /backends must not name a backend twice/],
  ])('rejects a bad field with a message naming it (%#)', (mutate, message) => {
    const s = minimal();
    mutate(s);
    expect(() => parseScenario(s, 'tiny.json')).toThrow(ScenarioError);
    expect(() => parseScenario(s, 'tiny.json')).toThrow(message);
  });

  it('accepts every shipped scenario', () => {
    const dir = join(__dirname, 'scenarios');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const f of files) expect(() => parseScenario(JSON.parse(readFileSync(join(dir, f), 'utf8')), f)).not.toThrow();
  });
});

describe('seeded workload', () => {
  it('is identical for the same seed and differs for another', () => {
    const sc = parseScenario(minimal());
    const a = generateWorkload(sc);
    expect(generateWorkload(sc)).toEqual(a);
    expect(generateWorkload({ ...sc, seed: 8 })).not.toEqual(a);
  });

  it('follows the phases, mix, lengths and sessions', () => {
    const sc = parseScenario({
      ...minimal(),
      workload: {
        ...minimal().workload,
        phases: [
          { durationS: 200, ratePerS: 5 },
          { durationS: 200, ratePerS: 10 },
        ],
      },
    });
    const w = generateWorkload(sc);
    const first = w.filter((r) => r.atMs < 200_000).length;
    const second = w.length - first;
    expect(first / 200).toBeCloseTo(5, 0);
    expect(second / 200).toBeCloseTo(10, 0);
    expect(w.every((r, i) => i === 0 || r.atMs >= w[i - 1].atMs)).toBe(true);
    expect(w.filter((r) => r.model === 'llama3.2:latest').length / w.length).toBeCloseTo(0.75, 1);
    expect(w.every((r) => r.outputTokens >= 10 && r.outputTokens <= 20 && r.prompt.length <= r.promptTokens * 4)).toBe(
      true,
    );
    expect(w.filter((r) => r.session !== null).length / w.length).toBeCloseTo(0.5, 1);
    expect(new Set(w.map((r) => r.session).filter(Boolean)).size).toBeLessThanOrEqual(5);
  });

  it('rescales to a short smoke duration', () => {
    const w = generateWorkload(parseScenario(minimal()), 1);
    expect(w.every((r) => r.atMs < 1000)).toBe(true);
  });

  it('PRNG is deterministic and in [0, 1)', () => {
    const a = mulberry32(1);
    const b = mulberry32(1);
    for (let i = 0; i < 1000; i++) {
      const x = a();
      expect(x).toBe(b());
      expect(x >= 0 && x < 1).toBe(true);
    }
  });
});

describe('targets', () => {
  const t = (target: string, p95: number, loads = 0, errors = 0): TargetResult => ({
    target,
    kind: target.startsWith('balancer') ? 'balancer' : 'peer',
    requests: 10,
    ok: 10 - errors,
    errors,
    errorSamples: [],
    e2eMs: { count: 10, mean: p95, p50: p95, p95, p99: p95, max: p95 },
    ttftMs: { count: 10, mean: 1, p50: 1, p95: 1, p99: 1, max: 1 },
    loads,
    evictions: 0,
    perBackend: {},
    wallMs: 1,
  });

  it('compares p95 with the pools and nginx least_conn, and counts avoidable loads', () => {
    const sc = parseScenario({ ...minimal(), targets: { p95VsNginxLeastConn: 0.7 } });
    const checks = checksFor(
      sc,
      [t('balancer predictive', 900, 1), t('nginx-per-model-pools', 1000), t('nginx-least_conn', 1200)],
      0,
    );
    const by = (n: string) => checks.find((c) => c.name.startsWith(n))!;
    expect(by('p95 <= 1x per-model').pass).toBe(true);
    expect(by('p95 <= 0.7x nginx').pass).toBe(false);
    expect(by('p95 <= 0.7x nginx').limit).toBeCloseTo(840);
    expect(by('no avoidable').pass).toBe(false);
  });
});

describe('outputs', () => {
  it('writes nginx and HAProxy configs with keep-alive, no buffering and a per-server queue', () => {
    const n = nginxConfig('/tmp/x', [
      {
        listen: 8080,
        method: 'least_conn',
        servers: [
          { name: 'a', port: 1 },
          { name: 'b', port: 2 },
        ],
      },
    ]);
    expect(n).toContain('least_conn;');
    expect(n).toContain('keepalive 64;');
    expect(n).toContain('proxy_set_header Connection "";');
    expect(n).toContain('proxy_buffering off;');
    expect(n).toContain('pid /tmp/x/nginx.pid;');
    const h = haproxyConfig(8081, [{ name: 'a', port: 1, maxconn: 4 }]);
    expect(h).toContain('balance leastconn');
    expect(h).toContain('server a 127.0.0.1:1 maxconn 4');
  });

  it('draws a well-formed SVG that escapes labels', () => {
    const svg = barChart({
      title: 'p95 <s>',
      unit: 's',
      log: true,
      groups: [
        {
          label: 'g',
          bars: [
            { label: 'a&b', value: 0.4 },
            { label: 'c', value: 35, accent: true },
          ],
        },
      ],
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('a&amp;b');
    expect(svg).toContain('p95 &lt;s&gt;');
  });

  it('rejects malformed results', () => {
    expect(() => validateResults({ version: 1, machine: { nproc: 2 }, targets: [] })).not.toThrow();
    expect(() => validateResults({ version: 1, machine: {}, targets: [] })).toThrow(/machine.nproc/);
    expect(() =>
      validateResults({
        version: 1,
        machine: { nproc: 2 },
        targets: [],
        routing: [{ scenario: 's', requests: 3, targets: [{ target: 'x', requests: 2 }] }],
      }),
    ).toThrow(/2 records for 3 requests/);
  });

  it('parses the command line', () => {
    expect(parseArgs(['--suite', 'routing', '--scenario', 'a.json', '--out=o'])).toEqual({
      suite: 'routing',
      scenarios: ['a.json'],
      out: 'o',
    });
    expect(() => parseArgs(['--suite', 'fast'])).toThrow(/--suite must be/);
    expect(parseArgs(['--suite', 'random', '--clusters', '5', '--seed=9', '--duration', '15', '--hints'])).toEqual({
      suite: 'random',
      scenarios: [],
      out: 'bench-results/latest',
      clusters: 5,
      seed: 9,
      durationS: 15,
      hints: true,
    });
    expect(() => parseArgs(['--clusters', '0'])).toThrow(/--clusters must be an integer from 1/);
    expect(() => parseArgs(['--duration', 'long'])).toThrow(/--duration must be an integer/);
    expect(parseArgs(['--suite=random', '--repeat', '3']).repeat).toBe(3);
    expect(() => parseArgs(['--repeat', '0'])).toThrow(/--repeat must be an integer from 1 to 25 \(got 0\)/);
  });

  it('writes nginx weights only where they differ from 1', () => {
    const n = nginxConfig('/tmp/x', [
      {
        listen: 8080,
        method: 'least_conn',
        servers: [
          { name: 'a', port: 1, weight: 7 },
          { name: 'b', port: 2, weight: 1 },
        ],
      },
    ]);
    expect(n).toContain('server 127.0.0.1:1 weight=7;');
    expect(n).toContain('server 127.0.0.1:2;');
  });
});

describe('random clusters', () => {
  const seeds = clusterSeeds(1, 200);
  const clusters = seeds.map((s) => generateCluster(s, { durationS: 18 }));

  it('are the same for the same seed and differ between seeds', () => {
    expect(clusterSeeds(1, 5)).toEqual(seeds.slice(0, 5));
    expect(generateCluster(seeds[0], { durationS: 18 })).toEqual(clusters[0]);
    expect(new Set(clusters.map((c) => c.summary)).size).toBe(clusters.length);
  });

  it('stay within the ranges the issue asks for, and every scenario parses', () => {
    for (const c of clusters) {
      const sc = c.scenario;
      const bs = sc.backends;
      expect(bs.length).toBeGreaterThanOrEqual(3);
      expect(bs.length).toBeLessThanOrEqual(5);
      const speeds = bs.map((b) => b.tokensPerSecond);
      const spread = Math.max(...speeds) / Math.min(...speeds);
      expect(spread).toBeGreaterThanOrEqual(2.9);
      expect(spread).toBeLessThanOrEqual(10.1);
      for (const b of bs) {
        expect(b.numParallel).toBeGreaterThanOrEqual(1);
        expect(b.numParallel).toBeLessThanOrEqual(4);
        expect(b.maxLoadedModels).toBeGreaterThanOrEqual(1);
        expect(b.maxLoadedModels).toBeLessThanOrEqual(3);
        expect(b.models.length).toBeGreaterThanOrEqual(1);
        expect(b.models.length).toBeLessThanOrEqual(3);
        for (const m of b.models) {
          const loadMs = sc.models.find((x) => x.name === m)!.sizeGB * b.loadMsPerGB;
          expect(loadMs).toBeGreaterThanOrEqual(1000);
          expect(loadMs).toBeLessThanOrEqual(10_000);
        }
        // Warm models are planned ones; planned ones are on disk and fit the room.
        expect(b.loaded.every((m) => c.plan[b.name].includes(m))).toBe(true);
        expect(c.plan[b.name].every((m) => b.models.includes(m))).toBe(true);
        expect(c.plan[b.name].length).toBeGreaterThanOrEqual(1);
        expect(c.plan[b.name].length).toBeLessThanOrEqual(b.maxLoadedModels);
      }
      expect(c.utilization).toBeGreaterThanOrEqual(0.45);
      expect(c.utilization).toBeLessThanOrEqual(0.86);
      for (const [m, x] of Object.entries(c.perModel)) {
        expect(x.ratePerS).toBeLessThanOrEqual(x.capacityPerS * 0.921);
        // The expert's pool for a model is exactly the servers the plan gives it.
        expect(c.expert[m].map((e) => e.name).sort()).toEqual(
          bs
            .filter((b) => c.plan[b.name].includes(m))
            .map((b) => b.name)
            .sort(),
        );
        expect(c.expert[m].every((e) => e.weight >= 1 && e.weight <= 100)).toBe(true);
      }
      expect(c.expertLoads).toBe(bs.reduce((s, b) => s + c.plan[b.name].length - b.loaded.length, 0));
      if (c.allWarm) expect(c.expertLoads).toBe(0);
      expect(sc.workload.phases.reduce((s, p) => s + p.durationS, 0)).toBeCloseTo(18, 5);
      expect(() => parseScenario(JSON.parse(JSON.stringify(sc)), sc.name)).not.toThrow();
    }
  });

  it('--wide: 3-8 hosts and 1-6 models from the same seeds, every model planned and every scenario valid', () => {
    const wide = seeds.map((s) => generateCluster(s, { durationS: 18, wide: true }));
    const hosts = wide.map((c) => c.scenario.backends.length);
    const models = wide.map((c) => c.scenario.models.length);
    expect(Math.min(...hosts)).toBe(3);
    expect(Math.max(...hosts)).toBe(8);
    expect(Math.min(...models)).toBe(1);
    expect(Math.max(...models)).toBe(6);
    for (const c of wide) {
      for (const m of c.scenario.models) expect(c.expert[m.name].length).toBeGreaterThanOrEqual(1);
      expect(() => parseScenario(JSON.parse(JSON.stringify(c.scenario)), c.scenario.name)).not.toThrow();
    }
    // The suite's own clusters are unchanged by the option's existence.
    expect(generateCluster(seeds[0], { durationS: 18, wide: false })).toEqual(clusters[0]);
  });

  it('cover warm and partly cold placements, every load shape and 1-4 models', () => {
    expect(clusters.filter((c) => c.allWarm).length).toBeGreaterThan(50);
    expect(clusters.filter((c) => !c.allWarm && c.expertLoads > 0).length).toBeGreaterThan(50);
    for (const shape of ['steady', 'ramp', 'burst'])
      expect(clusters.some((c) => c.summary.includes(`, ${shape},`))).toBe(true);
    expect(new Set(clusters.map((c) => c.scenario.models.length))).toEqual(new Set([1, 2, 3, 4]));
    expect(clusters.some((c) => c.scenario.workload.sessions.share > 0.3)).toBe(true);
  });

  it('summarises ratios: share at most 1, medians, the worst cluster and avoidable loads', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(median([])).toBeNaN();
    const s = summarizeRandom([
      { index: 1, seed: 11, vsPools: 0.5, vsLeastConn: 0.1, allWarm: true, warmEnough: true, avoidableLoads: 0 },
      { index: 2, seed: 12, vsPools: 1.4, vsLeastConn: 0.3, allWarm: true, warmEnough: true, avoidableLoads: 2 },
      { index: 3, seed: 13, vsPools: 0.9, vsLeastConn: NaN, allWarm: false, warmEnough: false, avoidableLoads: 0 },
      // All warm, but one model was sent more than its warm servers serve: its loads are not avoidable.
      { index: 4, seed: 14, vsPools: 0.4, vsLeastConn: 0.1, allWarm: true, warmEnough: false, avoidableLoads: 0 },
    ]);
    expect(s.fractionVsPoolsAtMost1).toBeCloseTo(3 / 4);
    expect(s.medianVsPools).toBeCloseTo(0.7);
    expect(s.medianVsLeastConn).toBeCloseTo(0.1);
    expect(s.worst).toEqual({ index: 2, seed: 12, vsPools: 1.4 });
    expect(s.allWarmClusters).toBe(3);
    expect(s.warmEnoughClusters).toBe(2);
    expect(s.avoidableLoadClusters).toBe(1);
  });

  it('combines repeated runs of a target: median p50/p95, the most loads and errors, the median run', () => {
    const run = (p50: number, p95: number, loads: number, errors: number, tag: string): TargetResult => ({
      target: 'balancer predictive',
      kind: 'balancer',
      requests: 10,
      ok: 10 - errors,
      errors,
      errorSamples: errors ? [tag] : [],
      e2eMs: summarize([p95 - 1]),
      ttftMs: summarize([1]),
      loads,
      evictions: loads,
      perBackend: { [tag]: 10 },
      wallMs: 1,
      e2eAllMs: { ...summarize([p50]), p50, p95 },
      finalStatus: [{ tag }],
    });
    const { view, representative } = combineRuns('balancer predictive', [
      run(100, 4000, 0, 0, 'a'),
      run(300, 3000, 2, 0, 'b'),
      run(200, 9000, 1, 1, 'c'),
    ]);
    expect(view.p95Ms).toBe(4000);
    expect(view.p50Ms).toBe(200);
    expect(view.okP95Ms).toBe(3999);
    expect(view.loads).toBe(2);
    expect(view.errors).toBe(1);
    expect(view.p95RunsMs).toEqual([4000, 3000, 9000]);
    expect(representative.finalStatus).toEqual([{ tag: 'a' }]);
    expect(view.perBackend).toEqual({ a: 10 });
    // An even count: the median is the mean of the middle two, the representative the lower one.
    const two = combineRuns('x', [run(100, 5000, 0, 0, 'p'), run(100, 3000, 0, 0, 'q')]);
    expect(two.view.p95Ms).toBe(4000);
    expect(two.representative.perBackend).toEqual({ q: 10 });
    // One run: as it was, with no list of runs.
    const one = combineRuns('x', [run(100, 5000, 3, 0, 'r')]);
    expect(one.view.p95Ms).toBe(5000);
    expect(one.view.p95RunsMs).toBeUndefined();
    expect(() => combineRuns('x', [])).toThrow(/no runs/);
  });

  it("measures the load each model's schedule actually sends against its planned capacity", () => {
    // Run seed 1's cluster 1050428518: all warm; delta, planned on one slow server at a nominal
    // 64 %, draws 16 requests in 18 s, 1.29x what that server serves.
    const c = generateCluster(1050428518, { durationS: 18 });
    const plan = generateWorkload(c.scenario);
    expect(c.allWarm).toBe(true);
    const sent = sentLoad(c, plan, 18);
    expect(Object.keys(sent).sort()).toEqual(Object.keys(c.perModel).sort());
    expect(sent['delta:latest']).toBeGreaterThan(1.2);
    expect(c.perModel['delta:latest'].ratePerS / c.perModel['delta:latest'].capacityPerS).toBeLessThan(0.7);
    // Over many clusters the sent load follows the nominal one.
    const ratios: number[] = [];
    for (const seed of clusterSeeds(5, 40)) {
      const k = generateCluster(seed, { durationS: 18 });
      const sl = sentLoad(k, generateWorkload(k.scenario), 18);
      for (const [m, x] of Object.entries(k.perModel))
        if (x.ratePerS > 1) ratios.push(sl[m] / (x.ratePerS / x.capacityPerS));
    }
    expect(median(ratios)).toBeGreaterThan(0.85);
    expect(median(ratios)).toBeLessThan(1.15);
  });
});
