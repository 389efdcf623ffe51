/**
 * Replicas suite: what sharing state through Redis costs. Overhead: one balancer without Redis and
 * one with REDIS_URL, in front of the same fast simulator, at c=1 and c=64. Routing: each scenario
 * through one balancer and through three replicas sharing one Redis (requests taking turns).
 */
import { writeFileSync } from 'fs';
import { join } from 'path';
import { BenchContext, startBalancer, startSim } from './context';
import { LoadResult, runLoad } from './loadgen';
import { startRedis } from './peers';
import { Child, freePort } from './procs';
import { runScenario, ScenarioResult } from './routing';
import type { Scenario } from './scenario';

export interface ReplicasResult {
  durationS: number;
  rounds: number;
  overhead: { concurrency: number; target: string; result: LoadResult; rounds: LoadResult[] }[];
  /** p50 at c=1 with Redis minus without (ms). */
  redisAddedP50MsC1: number;
  /** Requests per second at c=64 with Redis, and as a share of without. */
  redisRpsC64: number;
  redisRpsC64VsLocal: number;
  routing: {
    scenario: string;
    oneP95Ms: number;
    threeP95Ms: number;
    p95Ratio: number;
    oneErrors: number;
    threeErrors: number;
    pass: boolean;
    detail: ScenarioResult;
  }[];
}

const SMALL_BODY = JSON.stringify({ model: 'llama3.2', prompt: 'hi', stream: false, options: { num_predict: 1 } });
/** The bound: three replicas keep p95 within 1.1x of one. */
export const REPLICAS_P95_LIMIT = 1.1;

export async function runReplicas(ctx: BenchContext, scenarios: Scenario[]): Promise<ReplicasResult> {
  const durationS = ctx.smoke ? 1 : 4;
  const roundsPerCell = ctx.smoke ? 1 : 3;
  const warmS = ctx.smoke ? 0 : 2;
  const children: Child[] = [];
  const overhead: ReplicasResult['overhead'] = [];
  try {
    const simPort = await freePort();
    const simCfg = join(ctx.tmp, 'replicas-sim.json');
    writeFileSync(
      simCfg,
      JSON.stringify({
        name: 'replicas',
        models: [{ name: 'llama3.2:latest', sizeBytes: 2_019_393_189 }],
        loaded: ['llama3.2:latest'],
        tokensPerSecond: 1_000_000,
        promptTokensPerSecond: 1_000_000_000,
        numParallel: 4096,
        maxQueue: 100_000,
        keepAliveMs: -1,
      }),
    );
    children.push(await startSim(ctx, 'replicas', simPort, simCfg));
    const redisPort = await freePort();
    children.push(await startRedis(redisPort));
    const balCfg = join(ctx.tmp, 'replicas-balancer.json');
    writeFileSync(
      balCfg,
      JSON.stringify({
        backends: [{ name: 'sim', url: `http://127.0.0.1:${simPort}`, parallel: 4096, maxLoadedModels: 3 }],
      }),
    );
    const localPort = await freePort();
    children.push(await startBalancer(ctx, localPort, balCfg, { QUEUE_MAX: '100000' }));
    const redisBalPort = await freePort();
    children.push(
      await startBalancer(ctx, redisBalPort, balCfg, {
        QUEUE_MAX: '100000',
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      }),
    );
    const targets = [
      { name: 'balancer', url: `http://127.0.0.1:${localPort}` },
      { name: 'balancer+redis', url: `http://127.0.0.1:${redisBalPort}` },
    ];
    for (const c of [1, 64]) {
      const rounds: Record<string, LoadResult[]> = {};
      for (const t of targets) {
        if (warmS > 0) await runLoad(ctx.loadGen, `${t.url}/api/generate`, SMALL_BODY, c, warmS, ctx.tmp);
        rounds[t.name] = [];
      }
      for (let round = 0; round < roundsPerCell; round++) {
        for (const t of targets) {
          ctx.log(
            `replicas: overhead ${t.name} c=${c} round ${round + 1}/${roundsPerCell}, ${durationS}s (${ctx.loadGen})`,
          );
          rounds[t.name].push(await runLoad(ctx.loadGen, `${t.url}/api/generate`, SMALL_BODY, c, durationS, ctx.tmp));
        }
      }
      for (const t of targets) {
        const sorted = [...rounds[t.name]].sort((a, b) => a.rps - b.rps);
        overhead.push({
          concurrency: c,
          target: t.name,
          result: sorted[Math.floor(sorted.length / 2)],
          rounds: rounds[t.name],
        });
      }
    }
  } finally {
    await Promise.all(children.reverse().map((c) => c.stop()));
  }
  const cell = (c: number, t: string) => overhead.find((o) => o.concurrency === c && o.target === t)!.result;
  const routing: ReplicasResult['routing'] = [];
  for (const sc of ctx.smoke ? scenarios.slice(0, 1) : scenarios) {
    const r = await runScenario(ctx, sc, undefined, ['balancer predictive', 'balancer predictive x3']);
    const one = r.targets.find((t) => t.target === 'balancer predictive')!;
    const three = r.targets.find((t) => t.target === 'balancer predictive x3')!;
    const p95Ratio = three.e2eMs.p95 / one.e2eMs.p95;
    routing.push({
      scenario: sc.name,
      oneP95Ms: one.e2eMs.p95,
      threeP95Ms: three.e2eMs.p95,
      p95Ratio,
      oneErrors: one.errors,
      threeErrors: three.errors,
      pass: p95Ratio <= REPLICAS_P95_LIMIT && three.errors === 0,
      detail: r,
    });
  }
  return {
    durationS,
    rounds: roundsPerCell,
    overhead,
    redisAddedP50MsC1: cell(1, 'balancer+redis').p50Ms - cell(1, 'balancer').p50Ms,
    redisRpsC64: cell(64, 'balancer+redis').rps,
    redisRpsC64VsLocal: cell(64, 'balancer+redis').rps / cell(64, 'balancer').rps,
    routing,
  };
}

const f = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

export function replicasTables(r: ReplicasResult): string {
  const lines = [
    `Overhead (median of ${r.rounds} rounds of ${r.durationS} s; one replica, the simulator answering at once):`,
    '',
    '| c | target | req/s | p50 ms | p99 ms | errors |',
    '|---|---|---|---|---|---|',
    ...r.overhead.map(
      (o) =>
        `| ${o.concurrency} | ${o.target} | ${f(o.result.rps, 0)} | ${f(o.result.p50Ms)} | ${f(o.result.p99Ms)} | ${o.result.errors + o.result.non2xx} |`,
    ),
    '',
    `Redis mode adds ${f(r.redisAddedP50MsC1)} ms at p50 (c=1); at c=64 it serves ${f(r.redisRpsC64, 0)} req/s, ${f(r.redisRpsC64VsLocal)}x of one replica without Redis.`,
    '',
    'Routing, predictive: one replica vs three sharing one Redis (requests in turn):',
    '',
    '| scenario | p95 one (s) | p95 three (s) | ratio | errors one / three | within 1.1x |',
    '|---|---|---|---|---|---|',
    ...r.routing.map(
      (x) =>
        `| ${x.scenario} | ${f(x.oneP95Ms / 1000)} | ${f(x.threeP95Ms / 1000)} | ${f(x.p95Ratio)} | ${x.oneErrors} / ${x.threeErrors} | ${x.pass ? 'yes' : 'NO'} |`,
    ),
  ];
  return lines.join('\n');
}
