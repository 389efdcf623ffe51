/** Routing suite: the same seeded workload replayed through each policy and each peer, on a fresh simulated cluster each time. */
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { BenchContext, startAgent, startBalancer, startSim } from './context';
import type { DriverJob, RequestRecord } from './driver';
import { startHaproxy, startNginx, startRedis } from './peers';
import { postJson } from './overhead';
import { Child, freePort, httpGet, runToEnd, sleep } from './procs';
import type { ExpertServer } from './random-cluster';
import { generateWorkload, Scenario, simConfigFor } from './scenario';
import { summarize, Summary } from './stats';

export const BALANCER_POLICIES = [
  'round-robin',
  'least-connections',
  'seed-score',
  'least-loaded',
  'predictive',
] as const;
export const PEERS = ['nginx-round-robin', 'nginx-least_conn', 'nginx-per-model-pools', 'haproxy-leastconn'] as const;

export interface TargetResult {
  target: string;
  kind: 'balancer' | 'peer';
  requests: number;
  ok: number;
  errors: number;
  errorSamples: string[];
  e2eMs: Summary;
  ttftMs: Summary;
  loads: number;
  evictions: number;
  perBackend: Record<string, number>;
  wallMs: number;
  /** End-to-end latency over every request, a failed one counted as the driver's timeout. */
  e2eAllMs?: Summary;
  /** The balancer's /balancer/status `backends` at the end of the run (what it learned). */
  finalStatus?: unknown[];
}

export interface TargetOptions {
  /** Tell the balancer each backend's `parallel` and `maxLoadedModels` (the suite's old default). */
  hints?: boolean;
  /**
   * Configure the balancer as a new user would: OLLAMA_BACKENDS only (the URL list), every other
   * setting at its default. Otherwise a config file names the backends and the queue is unbounded.
   */
  zeroConfig?: boolean;
  /** Weighted per-model pools for `nginx-per-model-pools` (else the scenario's pools, unweighted). */
  expert?: Record<string, ExpertServer[]>;
  /** Per-request timeout of the driver. */
  timeoutMs?: number;
}

export interface ScenarioResult {
  scenario: string;
  description: string;
  durationS: number;
  requests: number;
  unavoidableLoads: number;
  /** Whether the balancer targets ran with a gpu-agent beside each simulator. */
  agents: boolean;
  targets: TargetResult[];
  checks: { name: string; target: string; measured: number; limit: number; pass: boolean }[];
  skipped: string[];
}

interface Cluster {
  sims: Child[];
  ports: Record<string, number>;
  /** gpu-agent ports by backend name (only with --agents, only for balancer targets). */
  agentPorts: Record<string, number>;
}

async function startCluster(ctx: BenchContext, sc: Scenario, tag: string, withAgents: boolean): Promise<Cluster> {
  const ports: Record<string, number> = {};
  const agentPorts: Record<string, number> = {};
  const sims: Child[] = [];
  await Promise.all(
    sc.backends.map(async (b, i) => {
      const port = await freePort();
      ports[b.name] = port;
      const cfg = join(ctx.tmp, `${sc.name}-${tag}-${b.name}.json`);
      const statePath = join(ctx.tmp, `${sc.name}-${tag}-${b.name}.nvml`);
      const simCfg = simConfigFor(sc, b);
      if (withAgents) {
        const uuid = `GPU-00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`;
        simCfg.nvml = {
          statePath,
          gpus: [{ name: `Simulated GPU ${b.name}`, uuid, memTotalBytes: Math.round(b.vramGB * 1e9) }],
        };
      }
      writeFileSync(cfg, JSON.stringify(simCfg));
      sims.push(await startSim(ctx, b.name, port, cfg));
      if (withAgents) {
        agentPorts[b.name] = await freePort();
        sims.push(await startAgent(ctx, b.name, agentPorts[b.name], `http://127.0.0.1:${port}`, statePath));
      }
    }),
  );
  return { sims, ports, agentPorts };
}

async function simStats(port: number): Promise<{ loads: number; evictions: number }> {
  const r = await httpGet(`http://127.0.0.1:${port}/_sim/stats`, 5000);
  const j = JSON.parse(r.body);
  return { loads: j.loads, evictions: j.evictions };
}

/**
 * Replays the scenario through every policy and peer (or through `targetList`, e.g. the replicas
 * suite's "balancer predictive" and "balancer predictive x3": three replicas sharing one Redis, the
 * requests taking turns between them).
 */
export async function runScenario(
  ctx: BenchContext,
  sc: Scenario,
  only?: string[],
  targetList?: string[],
  opts: TargetOptions = {},
): Promise<ScenarioResult> {
  const durationS = ctx.smoke ? sc.smokeDurationS : sc.workload.phases.reduce((s, p) => s + p.durationS, 0);
  const plan = generateWorkload(sc, ctx.smoke ? sc.smokeDurationS : undefined);
  const skipped: string[] = [];
  const targets: string[] = targetList ? [...targetList] : [...BALANCER_POLICIES.map((p) => `balancer ${p}`)];
  for (const p of targetList ? [] : PEERS) {
    if (p.startsWith('nginx') && !ctx.hasNginx) skipped.push(p);
    else if (p.startsWith('haproxy') && !ctx.hasHaproxy) skipped.push(p);
    else targets.push(p);
  }
  const results: TargetResult[] = [];
  for (const target of targets) {
    if (only && !only.some((o) => target.includes(o))) continue;
    ctx.log(`routing: ${sc.name}: ${target} (${plan.length} requests over ${durationS}s)`);
    results.push(await runTarget(ctx, sc, target, plan, durationS, opts));
  }
  const loadedAnywhere = new Set(sc.backends.flatMap((b) => b.loaded));
  const unavoidableLoads = new Set(plan.map((p) => p.model).filter((m) => !loadedAnywhere.has(m))).size;
  return {
    scenario: sc.name,
    description: sc.description,
    durationS,
    requests: plan.length,
    unavoidableLoads,
    agents: ctx.agents,
    targets: results,
    checks: checksFor(sc, results, unavoidableLoads),
    skipped,
  };
}

/**
 * p95 comparisons allow a 5% noise band: on these shared 2-core machines two runs of the same
 * configuration differ by a few percent (timer jitter in the simulators), so "no more than" is
 * judged at that resolution. `measured` and `limit` are the raw numbers either way.
 */
export const P95_NOISE = 1.05;

export function checksFor(sc: Scenario, results: TargetResult[], unavoidableLoads: number): ScenarioResult['checks'] {
  const checks: ScenarioResult['checks'] = [];
  const pools = results.find((r) => r.target === 'nginx-per-model-pools');
  const lc = results.find((r) => r.target === 'nginx-least_conn');
  for (const r of results.filter((x) => x.kind === 'balancer')) {
    if (pools)
      checks.push({
        name: `p95 <= ${sc.targets.p95VsPools}x per-model pools`,
        target: r.target,
        measured: r.e2eMs.p95,
        limit: pools.e2eMs.p95 * sc.targets.p95VsPools,
        pass: r.e2eMs.p95 <= pools.e2eMs.p95 * sc.targets.p95VsPools * P95_NOISE,
      });
    if (lc && sc.targets.p95VsNginxLeastConn !== undefined)
      checks.push({
        name: `p95 <= ${sc.targets.p95VsNginxLeastConn}x nginx least_conn`,
        target: r.target,
        measured: r.e2eMs.p95,
        limit: lc.e2eMs.p95 * sc.targets.p95VsNginxLeastConn,
        pass: r.e2eMs.p95 <= lc.e2eMs.p95 * sc.targets.p95VsNginxLeastConn * P95_NOISE,
      });
    checks.push({
      name: 'no avoidable cold loads',
      target: r.target,
      measured: r.loads,
      limit: unavoidableLoads,
      pass: r.loads <= unavoidableLoads,
    });
    checks.push({ name: 'no errors', target: r.target, measured: r.errors, limit: 0, pass: r.errors === 0 });
  }
  return checks;
}

export async function runTarget(
  ctx: BenchContext,
  sc: Scenario,
  target: string,
  plan: ReturnType<typeof generateWorkload>,
  durationS: number,
  opts: TargetOptions = {},
): Promise<TargetResult> {
  const tag = target.replace(/[^A-Za-z0-9_-]+/g, '-');
  const cluster = await startCluster(ctx, sc, tag, ctx.agents && target.startsWith('balancer '));
  const children: Child[] = [...cluster.sims];
  try {
    const upstreamNames: Record<string, string> = {};
    for (const b of sc.backends) {
      upstreamNames[`127.0.0.1:${cluster.ports[b.name]}`] = b.name;
      upstreamNames[b.name] = b.name;
    }
    const servers = sc.backends.map((b) => ({ name: b.name, port: cluster.ports[b.name], maxconn: b.numParallel }));
    let targets: Record<string, string | string[]>;
    let statusUrl: string | undefined;
    if (target.startsWith('balancer ')) {
      // "balancer <policy>" or "balancer <policy> x<replicas>" (replicas sharing one Redis).
      const [policy, times] = target.slice('balancer '.length).split(' ');
      const replicas = times ? Number(times.slice(1)) : 1;
      const shared: Record<string, string> = {};
      if (replicas > 1) {
        const redisPort = await freePort();
        children.push(await startRedis(redisPort));
        shared.REDIS_URL = `redis://127.0.0.1:${redisPort}`;
      }
      const cfg = join(ctx.tmp, `${sc.name}-${tag}-balancer.json`);
      if (!opts.zeroConfig)
        writeFileSync(
          cfg,
          JSON.stringify({
            backends: sc.backends.map((b) => ({
              name: b.name,
              url: `http://127.0.0.1:${cluster.ports[b.name]}`,
              ...(opts.hints ? { parallel: b.numParallel, maxLoadedModels: b.maxLoadedModels } : {}),
              ...(cluster.agentPorts[b.name] ? { agentUrl: `http://127.0.0.1:${cluster.agentPorts[b.name]}` } : {}),
            })),
          }),
        );
      const urls: string[] = [];
      for (let r = 0; r < replicas; r++) {
        const port = await freePort();
        // Zero configuration: the URL list and nothing else, every other setting at its default.
        const bal = opts.zeroConfig
          ? await startBalancer(ctx, port, undefined, {
              OLLAMA_BACKENDS: sc.backends.map((b) => `http://127.0.0.1:${cluster.ports[b.name]}`).join(','),
              ROUTING_POLICY: policy,
              ...shared,
            })
          : await startBalancer(ctx, port, cfg, {
              ROUTING_POLICY: policy,
              QUEUE_MAX: '100000',
              QUEUE_TIMEOUT_MS: '300000',
              ...shared,
            });
        children.push(bal);
        urls.push(`http://127.0.0.1:${port}`);
      }
      for (const url of urls) {
        // Wait until the balancer has seen every backend's inventory (what is loaded where).
        const deadline = Date.now() + 15_000;
        let seen = '';
        while (Date.now() < deadline) {
          try {
            const st = JSON.parse((await httpGet(`${url}/balancer/status`)).body);
            const bs: any[] = Array.isArray(st.backends) ? st.backends : [];
            seen = `${bs.filter((b) => b.health === 'healthy' && b.inventoryAt).length}/${sc.backends.length} backends with inventory, ${bs.filter((b) => b.agent).length} with agent data`;
            if (bs.length && bs.every((b) => b.health === 'healthy' && b.inventoryAt && (!ctx.agents || b.agent)))
              break;
          } catch {
            /* not yet */
          }
          await sleep(100);
        }
        ctx.log(`routing: balancer ready: ${seen}`);
      }
      targets = { '*': urls.length === 1 ? urls[0] : urls };
      statusUrl = `${urls[0]}/balancer/status`;
    } else if (target === 'nginx-per-model-pools') {
      const pools = await Promise.all(
        Object.entries(sc.pools).map(async ([model, names]) => ({
          model,
          listen: await freePort(),
          method: 'least_conn' as const,
          servers: servers
            .filter((s) => names.includes(s.name))
            .map((s) => ({ ...s, weight: opts.expert?.[model]?.find((e) => e.name === s.name)?.weight })),
        })),
      );
      children.push(await startNginx(join(ctx.tmp, `nginx-${sc.name}-${tag}`), pools));
      targets = Object.fromEntries(pools.map((p) => [p.model, `http://127.0.0.1:${p.listen}`]));
    } else if (target.startsWith('nginx-')) {
      const listen = await freePort();
      children.push(
        await startNginx(join(ctx.tmp, `nginx-${sc.name}-${tag}`), [
          { listen, method: target === 'nginx-least_conn' ? 'least_conn' : 'round-robin', servers },
        ]),
      );
      targets = { '*': `http://127.0.0.1:${listen}` };
    } else {
      const listen = await freePort();
      children.push(await startHaproxy(join(ctx.tmp, `haproxy-${sc.name}-${tag}`), listen, servers));
      targets = { '*': `http://127.0.0.1:${listen}` };
    }
    // Count only what the workload causes.
    await Promise.all(
      sc.backends.map((b) => postJson(`http://127.0.0.1:${cluster.ports[b.name]}/_sim/stats/reset`, {})),
    );
    const timeoutMs = opts.timeoutMs ?? (ctx.smoke ? 30_000 : 180_000);
    const job: DriverJob = { requests: plan, targets, stream: sc.workload.stream, timeoutMs, upstreamNames };
    const jobPath = join(ctx.tmp, `${sc.name}-${tag}-job.json`);
    const outPath = join(ctx.tmp, `${sc.name}-${tag}-out.json`);
    writeFileSync(jobPath, JSON.stringify(job));
    const r = await runToEnd(process.execPath, [join(__dirname, 'driver.js'), jobPath, outPath], {
      timeoutMs: durationS * 1000 + timeoutMs + 30_000,
    });
    if (r.code !== 0) throw new Error(`workload driver failed for ${target} (exit ${r.code}): ${r.stderr.slice(-800)}`);
    const { records, wallMs } = JSON.parse(readFileSync(outPath, 'utf8')) as {
      records: RequestRecord[];
      wallMs: number;
    };
    let finalStatus: unknown[] | undefined;
    if (statusUrl) {
      try {
        const st = JSON.parse((await httpGet(statusUrl, 5000)).body);
        // Name each backend as the scenario does (zero-config names them host:port).
        finalStatus = Array.isArray(st.backends)
          ? st.backends.map((b: any) => ({ ...b, benchName: upstreamNames[b.name] ?? b.name }))
          : undefined;
      } catch {
        /* the table of learned values is then empty for this run */
      }
    }
    let loads = 0;
    let evictions = 0;
    for (const b of sc.backends) {
      const s = await simStats(cluster.ports[b.name]);
      loads += s.loads;
      evictions += s.evictions;
    }
    const ok = records.filter((x) => x.status === 200 && !x.error);
    const bad = records.filter((x) => !(x.status === 200 && !x.error));
    const perBackend: Record<string, number> = Object.fromEntries(sc.backends.map((b) => [b.name, 0]));
    for (const x of ok) perBackend[x.backend] = (perBackend[x.backend] ?? 0) + 1;
    return {
      target,
      kind: target.startsWith('balancer ') ? 'balancer' : 'peer',
      requests: records.length,
      ok: ok.length,
      errors: bad.length,
      errorSamples: [...new Set(bad.map((x) => `${x.status} ${x.error ?? ''}`.slice(0, 160)))].slice(0, 5),
      e2eMs: summarize(ok.map((x) => x.e2eMs)),
      ttftMs: summarize(ok.map((x) => x.ttftMs)),
      e2eAllMs: summarize(records.map((x) => (x.status === 200 && !x.error ? x.e2eMs : Math.max(x.e2eMs, timeoutMs)))),
      finalStatus,
      loads,
      evictions,
      perBackend,
      wallMs,
    };
  } finally {
    await Promise.all(children.reverse().map((c) => c.stop()));
  }
}
