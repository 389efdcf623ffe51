/**
 * npm run bench -- [--suite overhead|routing|random|replicas|all|smoke] [--scenario <file.json>]... [--out <dir>] [--only <target>,...]
 * Runs the overhead, routing, random-cluster and/or replicas suites, prints the tables, writes results.json, tables.md and SVG charts to --out.
 */
import { execFileSync } from 'child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { cpus, freemem, tmpdir, totalmem } from 'os';
import { join, resolve } from 'path';
import { agentMain, BenchContext, balancerMain, fakeNvmlLibrary, repoRoot, simCli } from './context';
import { pickLoadGen } from './loadgen';
import { runOverhead } from './overhead';
import { HAPROXY_INSTALL_HINT, NGINX_INSTALL_HINT } from './peers';
import { which } from './procs';
import { runRandomSuite } from './random-suite';
import {
  BenchResults,
  charts,
  overheadTables,
  randomTables,
  randomTargets,
  routingTables,
  targetsTable,
  validateResults,
} from './report';
import { replicasTables, runReplicas, REPLICAS_P95_LIMIT } from './replicas';
import { runScenario } from './routing';
import { parseScenario, Scenario, ScenarioError } from './scenario';
import { fmt } from './stats';

const USAGE = `usage: npm run bench -- [--suite overhead|routing|random|replicas|all|smoke] [--scenario <file.json>]... [--out <dir>] [--only <target>,...]
  --suite     overhead, routing, random (seeded clusters nobody tuned for, zero-config balancer vs
              nginx), replicas (Redis mode: its overhead, and 3 replicas vs 1 on each scenario),
              all (default: overhead + routing) or smoke (a few seconds per suite, for CI)
  --scenario  routing scenario file(s) (default: every tools/bench/scenarios/*.json)
  --out       where results.json, tables.md and the SVG charts go (default bench-results/latest)
  --only      run only targets whose name contains one of these (e.g. predictive,nginx-least_conn)
  --agents    routing: start apps/gpu-agent beside each simulator (fake NVML) and give the balancer its agentUrl
  --hints     routing, random: tell the balancer each backend's parallel and maxLoadedModels (default: names and URLs only)
  --clusters  random: how many seeded clusters (default 20; the smoke runs 2)
  --seed      random: the run seed the clusters derive from (default 1)
  --cluster   random: run exactly these cluster seeds (comma-separated, as the tables print them)
  --wide      random: wider clusters than the suite's own (3-8 hosts, 1-6 models), same seeds
  --duration  random: seconds of traffic per target per cluster (default 18; the smoke uses 3)
  --repeat    random: runs of each target per cluster, medians compared (default 1)`;

export interface Args {
  suite: 'overhead' | 'routing' | 'random' | 'replicas' | 'all' | 'smoke';
  scenarios: string[];
  out: string;
  only?: string[];
  agents?: boolean;
  hints?: boolean;
  wide?: boolean;
  clusters?: number;
  seed?: number;
  clusterSeeds?: number[];
  durationS?: number;
  /** random: runs of each target per cluster (medians compared). */
  repeat?: number;
}

function intArg(flag: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max)
    throw new Error(`${flag} must be an integer from ${min} to ${max} (got ${v})\n${USAGE}`);
  return n;
}

export function parseArgs(argv: string[]): Args {
  const a: Args = { suite: 'all', scenarios: [], out: 'bench-results/latest' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].includes('=')
      ? [argv[i].slice(0, argv[i].indexOf('=')), argv[i].slice(argv[i].indexOf('=') + 1)]
      : [argv[i], undefined];
    const val = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    if (flag === '--suite') {
      const s = val();
      if (!['overhead', 'routing', 'random', 'replicas', 'all', 'smoke'].includes(s))
        throw new Error(`--suite must be overhead, routing, random, replicas, all or smoke (got ${s})\n${USAGE}`);
      a.suite = s as Args['suite'];
    } else if (flag === '--scenario') a.scenarios.push(val());
    else if (flag === '--out') a.out = val();
    else if (flag === '--only') a.only = val().split(',').filter(Boolean);
    else if (flag === '--smoke') a.suite = 'smoke';
    else if (flag === '--agents') a.agents = true;
    else if (flag === '--hints') a.hints = true;
    else if (flag === '--wide') a.wide = true;
    else if (flag === '--clusters') a.clusters = intArg(flag, val(), 1, 1000);
    else if (flag === '--seed') a.seed = intArg(flag, val(), 0, 2 ** 31);
    else if (flag === '--cluster')
      a.clusterSeeds = val()
        .split(',')
        .filter(Boolean)
        .map((v) => intArg(flag, v.trim(), 0, 2 ** 32));
    else if (flag === '--duration') a.durationS = intArg(flag, val(), 2, 600);
    else if (flag === '--repeat') a.repeat = intArg(flag, val(), 1, 25);
    else if (flag === '--help' || flag === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${argv[i]}\n${USAGE}`);
  }
  return a;
}

export function loadScenario(file: string): Scenario {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ScenarioError(`scenario ${file}: cannot read or parse: ${(e as Error).message}`);
  }
  return parseScenario(raw, file);
}

function version(cmd: string, args: string[]): string | null {
  const bin = which(cmd);
  if (!bin) return null;
  try {
    return (
      execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
        .split('\n')[0]
        .trim() || bin
    );
  } catch (e: any) {
    return (
      String(e.stderr ?? '')
        .split('\n')[0]
        .trim() || bin
    );
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const root = repoRoot();
  const smoke = args.suite === 'smoke';
  for (const f of [
    simCli(root),
    balancerMain(root),
    ...(args.agents ? [agentMain(root), fakeNvmlLibrary(root)] : []),
  ]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run \`npm run build\` first (npm run bench does)`);
  }
  const scenarioFiles = args.scenarios.length
    ? args.scenarios.map((s) => resolve(s))
    : readdirSync(join(root, 'tools/bench/scenarios'))
        .filter((f) => f.endsWith('.json'))
        .sort()
        .map((f) => join(root, 'tools/bench/scenarios', f));
  // Parse every scenario up front: a bad file fails before anything starts.
  const scenarios = scenarioFiles.map(loadScenario);

  const nginx = version('nginx', ['-v']);
  const haproxy = version('haproxy', ['-v']);
  const skipped: string[] = [];
  if (!nginx) {
    console.warn(`bench: ${NGINX_INSTALL_HINT}; the nginx peers are skipped.`);
    skipped.push('nginx');
  }
  if (!haproxy) {
    console.warn(`bench: ${HAPROXY_INSTALL_HINT}; the HAProxy peer is skipped.`);
    skipped.push('haproxy');
  }
  const loadGen = pickLoadGen();
  if (loadGen !== 'wrk') {
    console.warn('bench: wrk not found (`apt-get install -y wrk`); using autocannon for every target instead.');
    skipped.push('wrk (autocannon used)');
  }
  const tmp = mkdtempSync(join(tmpdir(), 'ollama-bench-'));
  const ctx: BenchContext = {
    root,
    tmp,
    smoke,
    loadGen,
    hasNginx: !!nginx,
    hasHaproxy: !!haproxy,
    agents: !!args.agents,
    log: (m) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${m}`),
  };
  const cpu = cpus();
  const res: BenchResults = {
    version: 1,
    startedAt: new Date().toISOString(),
    finishedAt: '',
    suite: args.suite,
    smoke,
    machine: {
      nproc: cpu.length,
      cpuModel: cpu[0]?.model ?? 'unknown',
      memTotalBytes: totalmem(),
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      loadGen,
      nginx,
      haproxy,
    },
    targets: [],
    skipped,
    hints: !!args.hints,
  };
  ctx.log(
    `bench: suite ${args.suite}, ${cpu.length} CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB (${(freemem() / 2 ** 30).toFixed(1)} free), node ${process.version}, load generator ${loadGen}, temp ${tmp}`,
  );

  try {
    if (args.suite === 'overhead' || args.suite === 'all' || smoke) {
      const o = await runOverhead(ctx);
      res.overhead = o;
      const c1 = o.ratios.find((r) => r.concurrency === 1 && r.target === 'balancer')!;
      const c64 = o.ratios.find((r) => r.concurrency === 64 && r.target === 'balancer')!;
      res.targets.push({
        name: 'c=1: p50 added over direct',
        measured: `${fmt(c1.p50AddedMs, 2)} ms`,
        limit: '<= 1 ms',
        pass: c1.p50AddedMs <= 1,
      });
      if (Number.isFinite(c64.rpsVsNginx))
        res.targets.push({
          name: 'c=64: throughput vs nginx',
          measured: `${fmt(c64.rpsVsNginx, 2)}x`,
          limit: '>= 0.3x',
          pass: c64.rpsVsNginx >= 0.3,
        });
      for (const level of o.streaming) {
        const st = level.added.find((a) => a.target === 'balancer')!;
        const direct = level.results.find((r) => r.target === 'direct')!.result;
        res.targets.push({
          name: `${level.streams} streams: p99 per-chunk delay added`,
          measured: `${fmt(st.transitP99Ms, 1)} ms (direct's own p99 ${fmt(direct.transitMs.p99, 1)} ms; gap p99 added ${fmt(st.gapP99Ms, 1)} ms)`,
          limit: '< 5 ms',
          pass: st.transitP99Ms < 5,
        });
        res.targets.push({
          name: `${level.streams} streams: balancer peak RSS`,
          measured: `${fmt(level.balancerRssBytes.peak / 2 ** 20, 0)} MB`,
          limit: '< 300 MB',
          pass: level.balancerRssBytes.peak < 300 * 2 ** 20,
        });
        const errs = level.results.find((r) => r.target === 'balancer')!.result.errors;
        res.targets.push({
          name: `${level.streams} streams: errors via balancer`,
          measured: String(errs),
          limit: '0',
          pass: errs === 0,
        });
      }
      for (const s of o.skipped) if (!skipped.includes(s)) skipped.push(s);
    }
    if (args.suite === 'routing' || args.suite === 'all' || smoke) {
      res.routing = [];
      // The smoke replays one scenario through a few targets only.
      const list = smoke && !args.scenarios.length ? scenarios.slice(0, 1) : scenarios;
      const only =
        args.only ??
        (smoke
          ? [
              'balancer predictive',
              'balancer round-robin',
              'nginx-least_conn',
              'nginx-per-model-pools',
              'haproxy-leastconn',
            ]
          : undefined);
      for (const sc of list) {
        const r = await runScenario(ctx, sc, only, undefined, { hints: args.hints });
        res.routing.push(r);
        for (const c of r.checks.filter((c) => c.target === 'balancer predictive')) {
          const isMs = c.name.startsWith('p95');
          res.targets.push({
            name: `${r.scenario}: predictive ${c.name}`,
            measured: isMs ? `${fmt(c.measured / 1000, 2)} s` : String(c.measured),
            limit: isMs ? `<= ${fmt(c.limit / 1000, 2)} s (+5% noise band)` : `<= ${c.limit}`,
            pass: c.pass,
          });
        }
      }
    }
    if (args.suite === 'replicas') {
      const r = await runReplicas(ctx, scenarios);
      res.replicas = r;
      res.targets.push({
        name: 'Redis mode: p50 added at c=1',
        measured: `${fmt(r.redisAddedP50MsC1, 2)} ms`,
        limit: '<= 1 ms',
        pass: r.redisAddedP50MsC1 <= 1,
      });
      for (const x of r.routing)
        res.targets.push({
          name: `${x.scenario}: 3 replicas p95 vs 1`,
          measured: `${fmt(x.p95Ratio, 2)}x (${x.threeErrors} errors)`,
          limit: `<= ${REPLICAS_P95_LIMIT}x, 0 errors`,
          pass: x.pass,
        });
    }
    if (args.suite === 'random' || smoke) {
      const r = await runRandomSuite(ctx, {
        runSeed: args.seed ?? 1,
        clusters: args.clusterSeeds?.length ?? args.clusters ?? (smoke ? 2 : 20),
        clusterSeeds: args.clusterSeeds,
        durationS: args.durationS ?? (smoke ? 3 : 18),
        timeoutMs: smoke ? 8_000 : 30_000,
        only: args.only,
        hints: args.hints,
        wide: args.wide,
        repeat: args.repeat,
      });
      res.random = r;
      res.targets.push(...randomTargets(r));
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  res.finishedAt = new Date().toISOString();

  const out = resolve(args.out);
  mkdirSync(out, { recursive: true });
  const md = [
    `## Benchmark ${res.startedAt} (${args.suite})`,
    '',
    `Machine: ${res.machine.nproc} CPUs (${res.machine.cpuModel}), ${(res.machine.memTotalBytes / 2 ** 30).toFixed(1)} GiB, node ${res.machine.node}, ${res.machine.platform}; load generator ${loadGen}; ${nginx ?? 'no nginx'}; ${haproxy ?? 'no haproxy'}.`,
    skipped.length ? `\nSkipped: ${skipped.join(', ')}.` : '',
    res.overhead ? `\n## Overhead\n\n${overheadTables(res.overhead)}` : '',
    res.routing
      ? `\n## Routing${args.hints ? " (balancer told each backend's parallel and maxLoadedModels)" : ' (balancer given backend names and URLs only)'}\n\n${routingTables(res.routing)}`
      : '',
    res.random ? `\n## Random clusters\n\n${randomTables(res.random)}` : '',
    res.replicas ? `\n## Replicas (shared state on Redis)\n\n${replicasTables(res.replicas)}` : '',
    res.targets.length ? `\n## Targets\n\n${targetsTable(res)}\n` : '',
  ].join('\n');
  writeFileSync(join(out, 'results.json'), JSON.stringify(res, null, 2));
  writeFileSync(join(out, 'tables.md'), md);
  const svgs = charts(res);
  for (const [name, svg] of Object.entries(svgs)) writeFileSync(join(out, name), svg);
  process.stdout.write(md + '\n');

  // Prove the output is well formed (the CI smoke relies on this exit code).
  validateResults(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')));
  for (const name of Object.keys(svgs)) {
    const s = readFileSync(join(out, name), 'utf8');
    if (!s.startsWith('<svg') || !s.trimEnd().endsWith('</svg>')) throw new Error(`${name} is not a well-formed SVG`);
  }
  if (Object.keys(svgs).length === 0 && (res.overhead || res.routing)) throw new Error('no chart was written');
  console.error(`bench: wrote ${join(out, 'results.json')}, tables.md and ${Object.keys(svgs).join(', ')}`);
  if (skipped.length)
    console.error(`bench: skipped peers: ${skipped.join(', ')} (install with tools/bench/ensure-peers.sh)`);
  return 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (e: Error) => {
      console.error(`bench: ${e instanceof ScenarioError ? e.message : (e.stack ?? e.message)}`);
      process.exit(1);
    },
  );
}
