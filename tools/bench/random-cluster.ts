/**
 * Seeded random clusters the routing policy has never seen (the `random` suite), with the
 * configuration an expert who knows the ground truth would write for nginx.
 *
 * Each cluster: 3-5 simulated Ollama servers whose per-request speeds spread 3-10x, 1-4 parallel
 * slots each, room for 1-3 loaded models, 1-3 models on each disk (1-5 GB, 1-10 s loads); a
 * placement plan (which models each server should serve) from which some models start warm and some
 * only on disk; and a workload at 50-85 % of the plan's capacity with a model mix, an optional burst
 * and conversations. Pure: the same seed gives the same cluster.
 */
import { normaliseModel, Phase, PlannedRequest, Scenario, ScenarioBackend, ScenarioModel } from './scenario';
import { mulberry32 } from './stats';

export interface ExpertServer {
  name: string;
  /** nginx `weight=`: this server's share of the model's capacity (slots x speed). */
  weight: number;
}

export interface RandomCluster {
  /** The simulated cluster and workload (scenario.pools = the expert's pools, by name). */
  scenario: Scenario;
  /** The expert's per-model nginx pools (least_conn, weighted by capacity). */
  expert: Record<string, ExpertServer[]>;
  /** Ground truth: which models each backend serves in the plan. */
  plan: Record<string, string[]>;
  /** Every requested model starts warm on every server the plan gives it (so no load is needed). */
  allWarm: boolean;
  /** Loads the expert's configuration implies: planned (server, model) pairs cold at start. */
  expertLoads: number;
  /** Mean offered load over the plan's capacity. */
  utilization: number;
  /** Per model: offered requests/s and the plan's capacity in requests/s. */
  perModel: Record<string, { ratePerS: number; capacityPerS: number }>;
  /** Mean output tokens per request (the workload's outputTokens is a range around it). */
  meanOutputTokens: number;
  /** One line for tables. */
  summary: string;
}

export interface RandomClusterOptions {
  durationS: number;
  /** Keep the offered requests/s within this band (CPU budget of the shared machine). */
  minRatePerS?: number;
  maxRatePerS?: number;
  /**
   * Wider fleets than the suite's own (3-8 hosts, 1-6 models): clusters further from what the policy
   * was tuned on. The same seed draws the same numbers; only the ranges differ.
   */
  wide?: boolean;
}

const MODEL_NAMES = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'];
const PROMPT = { min: 50, max: 300 };

/** Expected service time (ms) of a mean request on a backend, once it holds a slot. */
export function serviceMs(
  b: Pick<ScenarioBackend, 'tokensPerSecond' | 'promptTokensPerSecond'>,
  promptTokens: number,
  outputTokens: number,
): number {
  return (promptTokens / b.promptTokensPerSecond) * 1000 + (outputTokens / b.tokensPerSecond) * 1000 + 5;
}

export function generateCluster(seed: number, opts: RandomClusterOptions): RandomCluster {
  const rand = mulberry32(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const shuffle = <T>(xs: T[]): T[] => {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  };
  const round1 = (x: number): number => Math.round(x * 10) / 10;

  const nB = opts.wide ? int(3, 8) : int(3, 5);
  const nM = Math.min(nB, opts.wide ? int(1, 6) : int(1, 4));
  const models: ScenarioModel[] = MODEL_NAMES.slice(0, nM).map((n) => ({
    name: normaliseModel(n),
    sizeGB: round1(1 + rand() * 4),
  }));
  const names = models.map((m) => m.name);

  // Speeds: the slowest and the fastest span `spread` (3-10x); the rest log-uniform between.
  const spread = 3 + rand() * 7;
  const minTps = 12 + rand() * 13;
  const factors = shuffle([1, spread, ...Array.from({ length: nB - 2 }, () => Math.pow(spread, rand()))]);

  const backends: ScenarioBackend[] = [];
  const plan: Record<string, string[]> = {};
  for (let i = 0; i < nB; i++) {
    const tps = round1(minTps * factors[i]);
    const maxLoaded = int(1, Math.min(3, nM));
    backends.push({
      name: `h${i + 1}`,
      tokensPerSecond: tps,
      promptTokensPerSecond: Math.round(tps * 40),
      numParallel: int(1, 4),
      vramGB: 0, // set below, once the disk is known
      maxLoadedModels: maxLoaded,
      // 1000-2000 ms per GB: with 1-5 GB models every load takes 1-10 s.
      loadMsPerGB: Math.round(1000 + rand() * 1000),
      models: [],
      loaded: [],
    });
  }
  // Plan: every model served somewhere; each server serves 1..maxLoaded models.
  const order = shuffle(backends.map((_, i) => i));
  const planned: Set<string>[] = backends.map(() => new Set<string>());
  names.forEach((m, k) => planned[order[k % nB]].add(m));
  backends.forEach((b, i) => {
    const want = int(1, b.maxLoadedModels);
    for (const m of shuffle([...names])) {
      if (planned[i].size >= want) break;
      planned[i].add(m);
    }
    // A server given more models than it has room for (only possible when nM > nB; not here) keeps the first.
    plan[b.name] = [...planned[i]].sort();
  });
  // Disk: the planned models plus a few others (1-3 per host), so cold options exist.
  backends.forEach((b, i) => {
    const disk = new Set(planned[i]);
    const want = Math.min(nM, Math.max(disk.size, int(1, 3)));
    for (const m of shuffle([...names])) {
      if (disk.size >= want) break;
      disk.add(m);
    }
    b.models = names.filter((m) => disk.has(m));
    // Memory for maxLoadedModels of the largest models on its disk: the count is what binds.
    const sizes = b.models.map((m) => models.find((x) => x.name === m)!.sizeGB).sort((x, y) => y - x);
    b.vramGB = round1(sizes.slice(0, b.maxLoadedModels).reduce((s, x) => s + x, 0) + 0.5);
  });
  // Warm at start: everything planned (half the clusters), or each planned pair with p = 0.6.
  const allWarm = rand() < 0.5;
  let expertLoads = 0;
  backends.forEach((b) => {
    b.loaded = plan[b.name].filter(() => allWarm || rand() < 0.6);
    expertLoads += plan[b.name].length - b.loaded.length;
  });

  // Workload: mean output length chosen so the offered rate stays within the CPU budget.
  const minRate = opts.minRatePerS ?? 4;
  const maxRate = opts.maxRatePerS ?? 24;
  const utilization = 0.5 + rand() * 0.35;
  // Per-model skew of the load (0.85-1.1), normalised below so the whole cluster sits at `utilization`.
  const skew: Record<string, number> = Object.fromEntries(names.map((m) => [m, 0.85 + rand() * 0.25]));
  const promptMean = (PROMPT.min + PROMPT.max) / 2;
  const capacityOf = (m: string, outMean: number): number =>
    backends
      .filter((b) => plan[b.name].includes(m))
      .reduce((s, b) => s + (b.numParallel * 1000) / serviceMs(b, promptMean, outMean), 0);
  const rateOf = (m: string, outMean: number): number => {
    const total = names.reduce((s, x) => s + capacityOf(x, outMean), 0);
    const skewed = names.reduce((s, x) => s + skew[x] * capacityOf(x, outMean), 0);
    // No model above 92 % of its own pool's capacity, whatever the skew.
    return Math.min(0.92, (utilization * skew[m] * total) / skewed) * capacityOf(m, outMean);
  };
  let outMean = int(30, 100);
  for (let k = 0; k < 12; k++) {
    const total = names.reduce((s, m) => s + rateOf(m, outMean), 0);
    if (total > maxRate && outMean < 400) outMean = Math.min(400, Math.ceil(outMean * (total / maxRate) * 1.05));
    else if (total < minRate && outMean > 8) outMean = Math.max(8, Math.floor(outMean * (total / minRate) * 0.95));
    else break;
  }
  const perModel: RandomCluster['perModel'] = {};
  for (const m of names) perModel[m] = { ratePerS: rateOf(m, outMean), capacityPerS: capacityOf(m, outMean) };
  const totalRate = names.reduce((s, m) => s + perModel[m].ratePerS, 0);
  const utilizationActual = totalRate / names.reduce((s, m) => s + perModel[m].capacityPerS, 0);

  // Phases: steady, a ramp, or a burst (1.8x for 2-3 s); the time-average rate is totalRate.
  const d = opts.durationS;
  const shape = pick(['steady', 'ramp', 'burst'] as const);
  let phases: Phase[];
  if (shape === 'steady') phases = [{ durationS: d, ratePerS: totalRate }];
  else if (shape === 'ramp') {
    const d1 = round1(d * 0.4);
    // 0.7x then x so that the mean is 1: 0.7*0.4 + x*0.6 = 1.
    phases = [
      { durationS: d1, ratePerS: totalRate * 0.7 },
      { durationS: round1(d - d1), ratePerS: (totalRate * (1 - 0.7 * (d1 / d))) / ((d - d1) / d) },
    ];
  } else {
    const burst = round1(Math.min(d * 0.2, 2 + rand()));
    const d1 = round1((d - burst) * (0.3 + rand() * 0.3));
    const rest = round1(d - burst - d1);
    const base = (totalRate * d) / (d1 + rest + 1.8 * burst);
    phases = [
      { durationS: d1, ratePerS: base },
      { durationS: burst, ratePerS: base * 1.8 },
      { durationS: rest, ratePerS: base },
    ].filter((p) => p.durationS > 0);
  }
  phases = phases.map((p) => ({ durationS: p.durationS, ratePerS: Math.round(p.ratePerS * 100) / 100 }));

  const expert: Record<string, ExpertServer[]> = {};
  for (const m of names) {
    const holders = backends.filter((b) => plan[b.name].includes(m));
    const caps = holders.map((b) => (b.numParallel * 1000) / serviceMs(b, promptMean, outMean));
    const least = Math.min(...caps);
    expert[m] = holders.map((b, i) => ({
      name: b.name,
      weight: Math.max(1, Math.min(100, Math.round((caps[i] / least) * 10))),
    }));
  }

  const sessions = { count: int(5, 30), share: Math.round(rand() * 50) / 100 };
  const seedW = Math.floor(rand() * 2 ** 31);
  const scenario: Scenario = {
    name: `random-${seed}`,
    description: '',
    seed: seedW,
    models,
    backends,
    workload: {
      phases,
      mix: names
        .map((m) => ({ model: m, weight: Math.round(perModel[m].ratePerS * 1000) / 1000 }))
        .filter((x) => x.weight > 0),
      promptTokens: PROMPT,
      outputTokens: { min: Math.max(1, Math.round(outMean * 0.5)), max: Math.round(outMean * 1.5) },
      stream: true,
      sessions,
    },
    pools: Object.fromEntries(names.map((m) => [m, expert[m].map((s) => s.name)])),
    smokeDurationS: d,
    targets: { p95VsPools: 1 },
  };
  const hosts = backends
    .map(
      (b) =>
        `${b.name} ${b.tokensPerSecond} tok/s x${b.numParallel} room ${b.maxLoadedModels} [${b.models.map((m) => (b.loaded.includes(m) ? `${short(m)}*` : short(m))).join(' ')}]`,
    )
    .join('; ');
  const summary = `${nB} hosts, ${nM} model(s), speeds ${spread.toFixed(1)}x, ${shape}, ${totalRate.toFixed(1)} req/s at ${(utilizationActual * 100).toFixed(0)} %, ~${outMean} tokens; ${hosts} (* = warm)`;
  scenario.description = summary;
  return {
    scenario,
    expert,
    plan,
    allWarm,
    expertLoads,
    utilization: utilizationActual,
    perModel,
    meanOutputTokens: outMean,
    summary,
  };
}

const short = (m: string): string => m.replace(/:latest$/, '');

/**
 * Per model, the load the schedule actually sends over the plan's capacity for it (its requests per
 * second, scaled by their output length against the mean the capacity assumed). The generator aims
 * at 50-92 % per model; a seeded schedule can send more than that (Poisson arrivals).
 */
export function sentLoad(c: RandomCluster, plan: readonly PlannedRequest[], durationS: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [m, pm] of Object.entries(c.perModel)) {
    const rs = plan.filter((r) => r.model === m);
    const meanOut = rs.length ? rs.reduce((s, r) => s + r.outputTokens, 0) / rs.length : 0;
    out[m] =
      pm.capacityPerS > 0 ? (rs.length / durationS / pm.capacityPerS) * (meanOut / c.meanOutputTokens) : Infinity;
  }
  return out;
}

/** The seeds of a run: `count` clusters derived from one run seed (cluster k of seed S is always the same). */
export function clusterSeeds(runSeed: number, count: number): number[] {
  const rand = mulberry32(runSeed);
  return Array.from({ length: count }, () => 1 + Math.floor(rand() * 2 ** 31));
}
