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
import { fmt, ratio } from './stats';

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
   * there is avoidable (the condition).
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
  const out: RandomClusterResult[] = [];
  for (let k = 0; k < seeds.length; k++) {
    const c = generateCluster(seeds[k], { durationS: o.durationS, wide: o.wide });
    const plan = generateWorkload(c.scenario);
    const sent = Object.values(sentLoad(c, plan, o.durationS));
    const maxSentLoad = sent.length ? Math.max(...sent) : 0;
    const warmEnough = c.allWarm && maxSentLoad <= 1;
    ctx.log(`random ${k + 1}/${seeds.length} (seed ${seeds[k]}): ${c.summary}; ${plan.length} requests`);
    const order = RANDOM_TARGETS.map((_, i) => RANDOM_TARGETS[(i + k) % RANDOM_TARGETS.length]).filter(
      (t) => !o.only || o.only.some((x) => t.includes(x)),
    );
    const results = new Map<string, TargetResult>();
    for (const target of order) {
      if (target.startsWith('nginx') && !ctx.hasNginx) continue;
      const r = await runTarget(ctx, c.scenario, target, plan, o.durationS, {
        zeroConfig: !o.hints,
        hints: o.hints,
        expert: c.expert,
        timeoutMs: o.timeoutMs,
      });
      results.set(target, r);
      ctx.log(
        `random ${k + 1}: ${target}: p95 ${fmt((r.e2eAllMs?.p95 ?? NaN) / 1000, 2)} s, p50 ${fmt((r.e2eAllMs?.p50 ?? NaN) / 1000, 2)} s, loads ${r.loads}, errors ${r.errors}`,
      );
    }
    const view = (t: string): RandomTargetResult | null => {
      const r = results.get(t);
      if (!r) return null;
      return {
        target: t,
        p50Ms: r.e2eAllMs!.p50,
        p95Ms: r.e2eAllMs!.p95,
        okP95Ms: r.e2eMs.p95,
        errors: r.errors,
        loads: r.loads,
        evictions: r.evictions,
        perBackend: r.perBackend,
        errorSamples: r.errorSamples,
      };
    };
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
      learned: learnedTable(c, results.get('balancer predictive')?.finalStatus),
    });
  }
  return {
    runSeed: o.runSeed,
    durationS: o.durationS,
    timeoutMs: o.timeoutMs,
    clusters: out,
    summary: summarizeRandom(out),
  };
}

/** The middle value (mean of the two middle ones for an even count); NaN when empty. */
export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

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
