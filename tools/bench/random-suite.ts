/**
 * The `random` routing suite: seeded clusters the policy has never seen, each replayed through
 *   - the balancer with NO per-backend configuration (OLLAMA_BACKENDS only, defaults everywhere),
 *   - nginx least_conn over every host,
 *   - per-model nginx pools computed from the generator's ground truth (the expert's configuration:
 *     one weighted least_conn upstream per model over the servers the plan gives it).
 * The three targets of one cluster run back to back (order rotating per cluster), each on a fresh
 * cluster, so a busy shared machine slows all three alike.
 */
import { BenchContext } from './context';
import { clusterSeeds, generateCluster, RandomCluster, sentLoad } from './random-cluster';
import { runTarget, TargetResult } from './routing';
import { generateWorkload } from './scenario';
import { fmt, median, ratio } from './stats';

export const RANDOM_TARGETS = ['balancer predictive', 'nginx-least_conn', 'nginx-per-model-pools'] as const;

export interface RandomTargetResult {
  target: string;
  p50Ms: number;
  p95Ms: number;
  /** Over successful requests only (for comparison with the scenario tables). */
  okP95Ms: number;
  errors: number;
  loads: number;
  evictions: number;
  perBackend: Record<string, number>;
  errorSamples: string[];
  /** Each run's p95 (ms), in run order, when the cluster ran more than once (--repeat). */
  p95RunsMs?: number[];
}

export interface LearnedRow {
  backend: string;
  trueSlots: number;
  learnedSlots: number | null;
  trueMaxLoaded: number;
  learnedMaxLoaded: number | null;
  trueLoadMsPerGB: number;
  learnedLoadMsPerGB: number | null;
  trueTokensPerS: number;
  learnedTokensPerS: number | null;
}

export interface RandomClusterResult {
  index: number;
  seed: number;
  summary: string;
  allWarm: boolean;
  expertLoads: number;
  utilization: number;
  requests: number;
  targets: RandomTargetResult[];
  /** Balancer p95 / pools p95 and / least_conn p95. */
  vsPools: number;
  vsLeastConn: number;
  /** The highest load any model's schedule sends over its planned (warm, on an all-warm cluster) capacity. */
  maxSentLoad: number;
  /**
   * All warm, and every model's warm capacity covers the load its schedule actually sends: a load
   * there is avoidable (the issue's condition).
   */
  warmEnough: boolean;
  /** Loads the balancer made on a `warmEnough` cluster. */
  avoidableLoads: number;
  learned: LearnedRow[];
}

export interface RandomSuiteResult {
  runSeed: number;
  durationS: number;
  timeoutMs: number;
  /** Runs of each target per cluster (medians reported when more than one). */
  repeat?: number;
  clusters: RandomClusterResult[];
  summary: {
    clusters: number;
    fractionVsPoolsAtMost1: number;
    medianVsPools: number;
    medianVsLeastConn: number;
    allWarmClusters: number;
    /** All-warm clusters whose warm capacity covers the load sent (those the avoidable-load target applies to). */
    warmEnoughClusters: number;
    avoidableLoadClusters: number;
    worst: { index: number; seed: number; vsPools: number } | null;
  };
}

export interface RandomSuiteOptions {
  runSeed: number;
  clusters: number;
  /** Exactly these cluster seeds (else `clusters` derived from `runSeed`). */
  clusterSeeds?: number[];
  durationS: number;
  timeoutMs: number;
  /** Run only targets whose name contains one of these. */
  only?: string[];
  /**
   * Tell the balancer each backend's true parallel slots and room (a config file, as the routing
   * suite's --hints): what learning could at best reach. Not the suite's targets, which are zero-config.
   */
  hints?: boolean;
  /** Wider clusters (3-8 hosts, 1-6 models): see RandomClusterOptions.wide. */
  wide?: boolean;
  /**
   * Runs of each target per cluster (default 1). One run of a cluster moves its p95 by up to 30 %
   * on some clusters (timing decides which server a tie or a load goes to), for the pools as for
   * the balancer; with more, each target's p95 and p50 are the medians of its runs, loads and
   * errors the most any run had (an avoidable load in any run counts).
   */
  repeat?: number;
}

/**
 * One target's runs of one cluster as one row: p50, p95 and ok-p95 the medians of the runs; loads,
 * evictions and errors the most any run had; the per-backend counts, error samples and final
 * status those of the run whose p95 is the median (the lower middle one for an even count).
 */
export function combineRuns(
  target: string,
  runs: readonly TargetResult[],
): { view: RandomTargetResult; representative: TargetResult } {
  if (!runs.length) throw new Error(`combineRuns: no runs of ${target}`);
  const p95s = runs.map((r) => r.e2eAllMs!.p95);
  const byP95 = runs.map((r, i) => ({ r, p: p95s[i] })).sort((a, b) => a.p - b.p);
  const representative = byP95[(byP95.length - 1) >> 1].r;
  const view: RandomTargetResult = {
    target,
    p50Ms: median(runs.map((r) => r.e2eAllMs!.p50)),
    p95Ms: median(p95s),
    okP95Ms: median(runs.map((r) => r.e2eMs.p95)),
    errors: Math.max(...runs.map((r) => r.errors)),
    loads: Math.max(...runs.map((r) => r.loads)),
    evictions: Math.max(...runs.map((r) => r.evictions)),
    perBackend: representative.perBackend,
    errorSamples: representative.errorSamples,
  };
  if (runs.length > 1) view.p95RunsMs = p95s;
  return { view, representative };
}

function learnedTable(c: RandomCluster, status: unknown[] | undefined): LearnedRow[] {
  if (!status) return [];
  return c.scenario.backends.map((b) => {
    const s = (status as any[]).find((x) => x.benchName === b.name) ?? {};
    const l = s.learned ?? {};
    const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    // Slots may be learned per model: report the one of the model this host serves most.
    let slots = num(l.slots);
    if (slots === null && l.slots && typeof l.slots === 'object') {
      const vals = Object.values(l.slots as Record<string, unknown>)
        .map(num)
        .filter((v): v is number => v !== null);
      slots = vals.length ? Math.max(...vals) : null;
    }
    return {
      backend: b.name,
      trueSlots: b.numParallel,
      learnedSlots: slots,
      trueMaxLoaded: b.maxLoadedModels,
      learnedMaxLoaded: num(l.maxLoadedModels),
      trueLoadMsPerGB: b.loadMsPerGB,
      learnedLoadMsPerGB: num(l.loadMsPerGB),
      trueTokensPerS: b.tokensPerSecond,
      learnedTokensPerS: num(l.tokensPerSecond),
    };
  });
}

export async function runRandomSuite(ctx: BenchContext, o: RandomSuiteOptions): Promise<RandomSuiteResult> {
  const seeds = o.clusterSeeds?.length ? o.clusterSeeds : clusterSeeds(o.runSeed, o.clusters);
  const repeat = Math.max(1, o.repeat ?? 1);
  const out: RandomClusterResult[] = [];
  for (let k = 0; k < seeds.length; k++) {
    const c = generateCluster(seeds[k], { durationS: o.durationS, wide: o.wide });
    const plan = generateWorkload(c.scenario);
    const sent = Object.values(sentLoad(c, plan, o.durationS));
    const maxSentLoad = sent.length ? Math.max(...sent) : 0;
    const warmEnough = c.allWarm && maxSentLoad <= 1;
    ctx.log(`random ${k + 1}/${seeds.length} (seed ${seeds[k]}): ${c.summary}; ${plan.length} requests`);
    const runs = new Map<string, TargetResult[]>();
    for (let round = 0; round < repeat; round++) {
      // The order rotates per cluster and per round: no target always runs first on a fresh machine.
      const order = RANDOM_TARGETS.map((_, i) => RANDOM_TARGETS[(i + k + round) % RANDOM_TARGETS.length]).filter(
        (t) => !o.only || o.only.some((x) => t.includes(x)),
      );
      for (const target of order) {
        if (target.startsWith('nginx') && !ctx.hasNginx) continue;
        const r = await runTarget(ctx, c.scenario, target, plan, o.durationS, {
          zeroConfig: !o.hints,
          hints: o.hints,
          expert: c.expert,
          timeoutMs: o.timeoutMs,
        });
        if (!runs.has(target)) runs.set(target, []);
        runs.get(target)!.push(r);
        ctx.log(
          `random ${k + 1}${repeat > 1 ? ` run ${round + 1}/${repeat}` : ''}: ${target}: p95 ${fmt((r.e2eAllMs?.p95 ?? NaN) / 1000, 2)} s, p50 ${fmt((r.e2eAllMs?.p50 ?? NaN) / 1000, 2)} s, loads ${r.loads}, errors ${r.errors}`,
        );
      }
    }
    const combined = new Map([...runs].map(([t, rs]) => [t, combineRuns(t, rs)]));
    const view = (t: string): RandomTargetResult | null => combined.get(t)?.view ?? null;
    const targets = RANDOM_TARGETS.map(view).filter((x): x is RandomTargetResult => x !== null);
    const bal = targets.find((t) => t.target === 'balancer predictive');
    const pools = targets.find((t) => t.target === 'nginx-per-model-pools');
    const lc = targets.find((t) => t.target === 'nginx-least_conn');
    out.push({
      index: k + 1,
      seed: seeds[k],
      summary: c.summary,
      allWarm: c.allWarm,
      maxSentLoad,
      warmEnough,
      expertLoads: c.expertLoads,
      utilization: c.utilization,
      requests: plan.length,
      targets,
      vsPools: ratio(bal?.p95Ms ?? NaN, pools?.p95Ms ?? NaN),
      vsLeastConn: ratio(bal?.p95Ms ?? NaN, lc?.p95Ms ?? NaN),
      avoidableLoads: warmEnough && bal ? bal.loads : 0,
      learned: learnedTable(c, combined.get('balancer predictive')?.representative.finalStatus),
    });
  }
  return {
    runSeed: o.runSeed,
    durationS: o.durationS,
    timeoutMs: o.timeoutMs,
    repeat,
    clusters: out,
    summary: summarizeRandom(out),
  };
}

export { median };

export function summarizeRandom(
  cs: Pick<
    RandomClusterResult,
    'index' | 'seed' | 'vsPools' | 'vsLeastConn' | 'allWarm' | 'warmEnough' | 'avoidableLoads'
  >[],
): RandomSuiteResult['summary'] {
  const vp = cs.map((c) => c.vsPools).filter(Number.isFinite);
  const vl = cs.map((c) => c.vsLeastConn).filter(Number.isFinite);
  let worst: RandomSuiteResult['summary']['worst'] = null;
  for (const c of cs)
    if (Number.isFinite(c.vsPools) && (!worst || c.vsPools > worst.vsPools))
      worst = { index: c.index, seed: c.seed, vsPools: c.vsPools };
  return {
    clusters: cs.length,
    fractionVsPoolsAtMost1: vp.length ? vp.filter((r) => r <= 1).length / vp.length : NaN,
    medianVsPools: median(vp),
    medianVsLeastConn: median(vl),
    allWarmClusters: cs.filter((c) => c.allWarm).length,
    warmEnoughClusters: cs.filter((c) => c.warmEnough).length,
    avoidableLoadClusters: cs.filter((c) => c.avoidableLoads > 0).length,
    worst,
  };
}
