/** Markdown tables and SVG charts from the raw results. */
import type { ReplicasResult } from './replicas';
import type { OverheadResult } from './overhead';
import type { RandomClusterResult, RandomSuiteResult, RandomTargetResult } from './random-suite';
import type { ScenarioResult } from './routing';
import { fmt } from './stats';
import { barChart } from './svg';

export interface BenchResults {
  version: 1;
  startedAt: string;
  finishedAt: string;
  suite: string;
  smoke: boolean;
  machine: {
    nproc: number;
    cpuModel: string;
    memTotalBytes: number;
    node: string;
    platform: string;
    loadGen: string;
    nginx: string | null;
    haproxy: string | null;
  };
  overhead?: OverheadResult;
  routing?: ScenarioResult[];
  replicas?: ReplicasResult;
  random?: RandomSuiteResult;
  /** Whether the balancer targets of the scenario suite were told each backend's parallel and maxLoadedModels. */
  hints?: boolean;
  targets: { name: string; measured: string; limit: string; pass: boolean }[];
  skipped: string[];
}

function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

const mb = (b: number): string => (Number.isFinite(b) ? `${(b / 1024 / 1024).toFixed(0)} MB` : 'n/a');
const sec = (ms: number): string => fmt(ms / 1000, 2);

export function overheadTables(o: OverheadResult): string {
  const small = table(
    [
      'conc.',
      'target',
      'req/s',
      'p50 ms',
      'p99 ms',
      'errors',
      'req/s ÷ direct',
      'req/s ÷ nginx',
      'p50 added ms',
      'p99 added ms',
    ],
    o.small.map((s) => {
      const r = o.ratios.find((x) => x.concurrency === s.concurrency && x.target === s.target)!;
      return [
        String(s.concurrency),
        s.target,
        fmt(s.result.rps, 0),
        fmt(s.result.p50Ms, 2),
        fmt(s.result.p99Ms, 2),
        String(s.result.errors + s.result.non2xx),
        fmt(r.rpsVsDirect, 2),
        fmt(r.rpsVsNginx, 2),
        s.target === 'direct' ? '-' : fmt(r.p50AddedMs, 2),
        s.target === 'direct' ? '-' : fmt(r.p99AddedMs, 2),
      ];
    }),
  );
  const levels = o.streaming
    .map((st) => {
      const streams = table(
        [
          'target',
          'streams',
          'errors',
          'chunks',
          'TTFB p50 ms',
          'TTFB p99 ms',
          'gap p50 ms',
          'gap p99 ms',
          'per-chunk delay p50 ms',
          'per-chunk delay p99 ms',
        ],
        st.results.map((s) => [
          s.target,
          String(s.result.streams),
          String(s.result.errors),
          String(s.result.chunks),
          fmt(s.result.ttfbMs.p50, 1),
          fmt(s.result.ttfbMs.p99, 1),
          fmt(s.result.gapMs.p50, 1),
          fmt(s.result.gapMs.p99, 1),
          fmt(s.result.transitMs.p50, 1),
          fmt(s.result.transitMs.p99, 1),
        ]),
      );
      const added = table(
        [
          'target',
          'TTFB added p50 ms',
          'TTFB added p99 ms',
          'gap added p50 ms',
          'gap added p99 ms',
          'per-chunk delay added p50 ms',
          'per-chunk delay added p99 ms',
        ],
        st.added.map((a) => [
          a.target,
          fmt(a.ttfbP50Ms, 1),
          fmt(a.ttfbP99Ms, 1),
          fmt(a.gapP50Ms, 1),
          fmt(a.gapP99Ms, 1),
          fmt(a.transitP50Ms, 1),
          fmt(a.transitP99Ms, 1),
        ]),
      );
      return `### ${st.streams} concurrent streams, one chunk every ${st.chunkIntervalMs} ms, ${st.outputTokens} chunks each

${streams}

Added over direct:

${added}

Balancer resident memory: ${mb(st.balancerRssBytes.idle)} idle at start, ${mb(st.balancerRssBytes.peak)} peak during these streams.
`;
    })
    .join('\n');
  return `### Small non-streamed requests (${o.loadGen}; ${o.rounds} interleaved round(s) of ${o.durationS} s per cell, median-throughput round shown)

${small}

${levels}
Balancer peak resident memory over the whole suite: ${mb(o.balancerRssPeakUnderLoadBytes)}.
`;
}

export function routingTables(rs: ScenarioResult[]): string {
  return rs
    .map((r) => {
      const t = table(
        [
          'target',
          'ok/sent',
          'errors',
          'mean s',
          'p50 s',
          'p95 s',
          'p99 s',
          'TTFT p50 s',
          'TTFT p95 s',
          'TTFT p99 s',
          'loads',
          'evictions',
          'requests per backend',
        ],
        r.targets.map((x) => [
          x.kind === 'balancer' ? `**${x.target}**` : x.target,
          `${x.ok}/${x.requests}`,
          String(x.errors),
          sec(x.e2eMs.mean),
          sec(x.e2eMs.p50),
          sec(x.e2eMs.p95),
          sec(x.e2eMs.p99),
          sec(x.ttftMs.p50),
          sec(x.ttftMs.p95),
          sec(x.ttftMs.p99),
          String(x.loads),
          String(x.evictions),
          Object.entries(x.perBackend)
            .map(([k, v]) => `${k}:${v}`)
            .join(' '),
        ]),
      );
      const errs = r.targets
        .filter((x) => x.errorSamples.length)
        .map((x) => `- ${x.target}: ${x.errorSamples.join('; ')}`);
      return `### ${r.scenario} (${r.requests} requests over ${r.durationS} s; unavoidable cold loads: ${r.unavoidableLoads}${r.agents ? '; balancer with a gpu-agent per backend' : ''})

${r.description}

${t}
${errs.length ? `\nError samples:\n${errs.join('\n')}\n` : ''}`;
    })
    .join('\n');
}

export function targetsTable(res: BenchResults): string {
  if (!res.targets.length) return '';
  return table(
    ['target', 'measured', 'limit', 'met'],
    res.targets.map((t) => [t.name, t.measured, t.limit, t.pass ? 'yes' : '**no**']),
  );
}

export function charts(res: BenchResults): Record<string, string> {
  const out: Record<string, string> = {};
  const o = res.overhead;
  if (o) {
    const group = (c: number) => ({
      label: `concurrency ${c}`,
      bars: o.small
        .filter((s) => s.concurrency === c)
        .map((s) => ({ label: s.target, value: s.result.rps, accent: s.target === 'balancer' })),
    });
    out['overhead-throughput.svg'] = barChart({
      title: 'Small requests: throughput (higher is better)',
      unit: 'req/s',
      groups: [group(1), group(64)],
    });
    const lat = (c: number) => ({
      label: `concurrency ${c}: p50 / p99`,
      bars: o.small
        .filter((s) => s.concurrency === c)
        .flatMap((s) => [
          { label: `${s.target} p50`, value: s.result.p50Ms, accent: s.target === 'balancer' },
          { label: `${s.target} p99`, value: s.result.p99Ms, accent: s.target === 'balancer' },
        ]),
    });
    out['overhead-latency.svg'] = barChart({
      title: 'Small requests: latency (lower is better)',
      unit: 'ms',
      groups: [lat(1), lat(64)],
      log: true,
    });
    out['overhead-streams.svg'] = barChart({
      title: 'Streams: p99 per-chunk delay, inter-chunk gap and TTFB (lower is better)',
      unit: 'ms',
      groups: o.streaming.flatMap((st) => [
        {
          label: `${st.streams} streams: per-chunk delay p99`,
          bars: st.results.map((s) => ({
            label: s.target,
            value: s.result.transitMs.p99,
            accent: s.target === 'balancer',
          })),
        },
        {
          label: `${st.streams} streams: inter-chunk gap p99`,
          bars: st.results.map((s) => ({
            label: s.target,
            value: s.result.gapMs.p99,
            accent: s.target === 'balancer',
          })),
        },
        {
          label: `${st.streams} streams: TTFB p99`,
          bars: st.results.map((s) => ({
            label: s.target,
            value: s.result.ttfbMs.p99,
            accent: s.target === 'balancer',
          })),
        },
      ]),
    });
  }
  if (res.routing?.length) {
    out['routing-p95.svg'] = barChart({
      title: 'Routing: p95 end-to-end latency per policy and peer (lower is better)',
      unit: 's',
      log: true,
      groups: res.routing.map((r) => ({
        label: r.scenario,
        bars: r.targets.map((t) => ({ label: t.target, value: t.e2eMs.p95 / 1000, accent: t.kind === 'balancer' })),
      })),
    });
  }
  if (res.random?.clusters.length) out['random-p95-ratios.svg'] = randomChart(res.random);
  return out;
}

/** Throws with the first problem found; used by the smoke to prove the output is well formed. */
export function validateResults(res: any): void {
  const need = (cond: boolean, what: string): void => {
    if (!cond) throw new Error(`results.json is malformed: ${what}`);
  };
  need(res && res.version === 1, 'version must be 1');
  need(typeof res.machine?.nproc === 'number', 'machine.nproc missing');
  need(Array.isArray(res.targets), 'targets must be an array');
  if (res.overhead) {
    need(Array.isArray(res.overhead.small) && res.overhead.small.length > 0, 'overhead.small is empty');
    for (const s of res.overhead.small)
      need(
        Number.isFinite(s.result.rps) && s.result.requests > 0,
        `overhead ${s.target} c=${s.concurrency} served no requests`,
      );
    need(
      Array.isArray(res.overhead.streaming) &&
        res.overhead.streaming.every((l: any) => l.results.every((s: any) => s.result.chunks > 0)),
      'a streaming run received no chunks',
    );
  }
  if (res.routing) {
    for (const r of res.routing) {
      need(r.targets.length > 0, `routing ${r.scenario} has no targets`);
      for (const t of r.targets)
        need(
          t.requests === r.requests,
          `routing ${r.scenario} ${t.target}: ${t.requests} records for ${r.requests} requests`,
        );
    }
  }
  if (res.random) {
    need(Array.isArray(res.random.clusters) && res.random.clusters.length > 0, 'random.clusters is empty');
    for (const c of res.random.clusters)
      need(
        c.targets.length > 0 && c.targets.every((t: any) => Number.isFinite(t.p95Ms)),
        `random cluster ${c.index} has a target without a p95`,
      );
  }
}

export function randomTables(r: RandomSuiteResult): string {
  const s = r.summary;
  const head = `${s.clusters} seeded clusters (run seed ${r.runSeed}, ${r.durationS} s of traffic per target; a failed request counts as the ${fmt(r.timeoutMs / 1000, 0)} s timeout)${(r.repeat ?? 1) > 1 ? `; each target ran ${r.repeat} times per cluster, in rotating order, and its p50 and p95 are the medians of its runs (each run's p95 in brackets), its loads and errors the most of any run` : ''}. The balancer runs with no per-backend configuration (OLLAMA_BACKENDS only, defaults everywhere); the pools are one weighted nginx least_conn upstream per model over the servers the ground-truth plan gives it.`;
  const t = (name: string, c: RandomClusterResult): RandomTargetResult | undefined =>
    c.targets.find((x) => x.target === name);
  const cell = (x: RandomTargetResult | undefined, f: (x: RandomTargetResult) => string): string => (x ? f(x) : 'n/a');
  const p50p95 = (x: RandomTargetResult): string =>
    `${sec(x.p50Ms)} / ${sec(x.p95Ms)}${x.p95RunsMs ? ` (${x.p95RunsMs.map(sec).join(', ')})` : ''}`;
  const rows = r.clusters.map((c) => {
    const b = t('balancer predictive', c);
    const p = t('nginx-per-model-pools', c);
    const l = t('nginx-least_conn', c);
    return [
      String(c.index),
      String(c.seed),
      cell(b, p50p95),
      cell(p, p50p95),
      cell(l, p50p95),
      c.vsPools <= 1 ? fmt(c.vsPools, 2) : `**${fmt(c.vsPools, 2)}**`,
      fmt(c.vsLeastConn, 3),
      `${cell(b, (x) => String(x.loads))} / ${cell(p, (x) => String(x.loads))} / ${cell(l, (x) => String(x.loads))}`,
      `${cell(b, (x) => String(x.errors))} / ${cell(p, (x) => String(x.errors))} / ${cell(l, (x) => String(x.errors))}`,
      !c.allWarm
        ? `no (plan loads ${c.expertLoads})`
        : !c.warmEnough
          ? `yes, but sent ${fmt(c.maxSentLoad, 2)}x a model's warm capacity (${cell(b, (x) => String(x.loads))} loads, not avoidable)`
          : c.avoidableLoads > 0
            ? `**yes, ${c.avoidableLoads} loads**`
            : 'yes, 0 loads',
    ];
  });
  const main = table(
    [
      '#',
      'seed',
      'balancer p50 / p95 s',
      'pools p50 / p95 s',
      'least_conn p50 / p95 s',
      'p95 ÷ pools',
      'p95 ÷ least_conn',
      'cold loads bal / pools / lc',
      'errors bal / pools / lc',
      'all warm',
    ],
    rows,
  );
  const clusters = r.clusters.map((c) => `${c.index}. ${c.summary}`).join('\n');
  const sorted = r.clusters
    .map((c) => c.vsPools)
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
  const buckets = [
    ['≤ 0.5', (x: number) => x <= 0.5],
    ['0.5–0.8', (x: number) => x > 0.5 && x <= 0.8],
    ['0.8–1.0', (x: number) => x > 0.8 && x <= 1.0],
    ['1.0–1.5', (x: number) => x > 1.0 && x <= 1.5],
    ['1.5–3', (x: number) => x > 1.5 && x <= 3],
    ['> 3', (x: number) => x > 3],
  ] as const;
  const dist = table(
    ['balancer p95 ÷ pools p95', 'clusters'],
    buckets.map(([label, f]) => [label, String(sorted.filter(f).length)]),
  );
  const learnedFrom = r.clusters.find((c) => c.learned.length);
  const learned = learnedFrom
    ? `\nLearned vs true on cluster ${learnedFrom.index} (after its ${r.durationS} s of traffic; n/a = not learned or not reported):\n\n${table(
        [
          'backend',
          'slots true / learned',
          'models loaded at once true / learned',
          'load ms per GB true / learned',
          'tokens/s true / learned',
        ],
        learnedFrom.learned.map((x) => [
          x.backend,
          `${x.trueSlots} / ${fmt(x.learnedSlots ?? NaN, 1)}`,
          `${x.trueMaxLoaded} / ${fmt(x.learnedMaxLoaded ?? NaN, 0)}`,
          `${x.trueLoadMsPerGB} / ${fmt(x.learnedLoadMsPerGB ?? NaN, 0)}`,
          `${x.trueTokensPerS} / ${fmt(x.learnedTokensPerS ?? NaN, 1)}`,
        ]),
      )}\n`
    : '';
  const errs = r.clusters.flatMap((c) =>
    c.targets
      .filter((x) => x.errorSamples.length)
      .map((x) => `- cluster ${c.index} ${x.target}: ${x.errorSamples.join('; ')}`),
  );
  return `${head}

${main}

Distribution:

${dist}

Summary: balancer p95 ≤ pools p95 on ${fmt(s.fractionVsPoolsAtMost1 * 100, 0)} % of clusters; median p95 ÷ pools ${fmt(s.medianVsPools, 2)}; median p95 ÷ least_conn ${fmt(s.medianVsLeastConn, 3)}; worst cluster ${s.worst ? `${s.worst.index} (seed ${s.worst.seed}, ${fmt(s.worst.vsPools, 2)}x)` : 'n/a'}; all-warm clusters whose warm capacity covers the load sent, with a cold load by the balancer: ${s.avoidableLoadClusters} of ${s.warmEnoughClusters} (all-warm: ${s.allWarmClusters}).
${learned}
Clusters (speed = output tokens/s per request; x slots; room = models loaded at once; [disk], * = warm at start):

${clusters}
${errs.length ? `\nError samples:\n${errs.join('\n')}\n` : ''}`;
}

export function randomTargets(r: RandomSuiteResult): BenchResults['targets'] {
  const s = r.summary;
  return [
    {
      name: 'random: clusters with balancer p95 <= pools p95',
      measured: `${fmt(s.fractionVsPoolsAtMost1 * 100, 0)} % of ${s.clusters}`,
      limit: '>= 90 %',
      pass: s.fractionVsPoolsAtMost1 >= 0.9,
    },
    {
      name: 'random: median balancer p95 / pools p95',
      measured: `${fmt(s.medianVsPools, 2)}x`,
      limit: '<= 0.8x',
      pass: s.medianVsPools <= 0.8,
    },
    {
      name: 'random: median balancer p95 / nginx least_conn p95',
      measured: `${fmt(s.medianVsLeastConn, 3)}x`,
      limit: '<= 0.2x',
      pass: s.medianVsLeastConn <= 0.2,
    },
    {
      name: 'random: all-warm clusters (warm capacity covers the load sent) with a cold load',
      measured: `${s.avoidableLoadClusters} of ${s.warmEnoughClusters}`,
      limit: '0',
      pass: s.avoidableLoadClusters === 0,
    },
  ];
}

export function randomChart(r: RandomSuiteResult): string {
  return barChart({
    title: 'Random clusters: balancer p95 (no per-backend config) ÷ peer p95 (lower is better)',
    unit: 'x',
    log: true,
    reference: { value: 1, label: '1.0 = as good as the expert' },
    groups: [
      {
        label: '÷ per-model pools (the expert)',
        bars: r.clusters.map((c) => ({
          label: `cluster ${c.index}${c.allWarm ? ' (warm)' : ''}`,
          value: c.vsPools,
          accent: c.vsPools <= 1,
        })),
      },
      {
        label: '÷ nginx least_conn',
        bars: r.clusters.map((c) => ({
          label: `cluster ${c.index}`,
          value: c.vsLeastConn,
          accent: c.vsLeastConn <= 0.2,
        })),
      },
    ],
  });
}
