/**
 * Priority suite: who gets the fleet when it is full. Each scenario is one simulated fleet and a
 * few API keys offering load (open loop, seeded Poisson arrivals, streamed /api/chat); it is run in
 * several modes on a fresh fleet each time, side by side in the same run:
 *   idle      only the keys marked `idleBaseline` (their latency on an otherwise idle fleet)
 *   fifo      every key, the balancer without API keys: one class, one FIFO (today's behaviour)
 *   priority  every key, the balancer with the keys' classes and weights
 * At `durationS` the driver stops sending and abandons what is still open; tokens are counted as
 * they arrive within the window [warmupS, durationS], latencies over requests that arrived in it
 * (one still open at the end counts with the time it had waited so far: a lower bound).
 *
 * Usage: node dist/tools/bench/priority.js [--scenario <file>]... [--out <dir>] [--smoke]
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as http from 'http';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import { BenchContext, repoRoot, startBalancer, startSim } from './context';
import { Child, freePort, httpGet, sleep } from './procs';
import { fmt, mulberry32, summarize, Summary } from './stats';
import { lineChart } from './svg';

export interface PriorityKey {
  name: string;
  /** Priority class (PRIORITY_CLASSES' defaults: interactive, standard, batch, sheddable). */
  class: string;
  weight: number;
  /** Offered load as a multiple of the fleet's capacity (0.2 = a fifth of it). */
  offered: number;
  outputTokens: { min: number; max: number };
  /** Part of the idle baseline run. */
  idleBaseline: boolean;
}

export interface PriorityScenario {
  name: string;
  description: string;
  seed: number;
  model: string;
  backends: { name: string; tokensPerSecond: number; numParallel: number }[];
  durationS: number;
  warmupS: number;
  smokeDurationS: number;
  queueMax: number;
  keys: PriorityKey[];
  modes: ('idle' | 'fifo' | 'priority')[];
}

export function parsePriorityScenario(raw: any, source: string): PriorityScenario {
  const bad = (field: string, why: string): never => {
    throw new Error(`priority scenario ${source}: ${field} ${why}`);
  };
  const num = (v: unknown, field: string, min: number): number =>
    typeof v === 'number' && Number.isFinite(v) && v >= min
      ? v
      : bad(field, `must be a number >= ${min} (got ${JSON.stringify(v)})`);
  if (typeof raw !== 'object' || raw === null) bad('(root)', 'must be an object');
  if (typeof raw.name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(raw.name)) bad('name', 'must be a short name');
  if (!Array.isArray(raw.backends) || raw.backends.length === 0) bad('backends', 'must be a non-empty array');
  if (!Array.isArray(raw.keys) || raw.keys.length === 0) bad('keys', 'must be a non-empty array');
  const modes = raw.modes ?? ['idle', 'fifo', 'priority'];
  for (const m of modes)
    if (!['idle', 'fifo', 'priority'].includes(m))
      bad('modes', `must list idle, fifo or priority (got ${JSON.stringify(m)})`);
  return {
    name: raw.name,
    description: String(raw.description ?? ''),
    seed: num(raw.seed ?? 1, 'seed', 0),
    model: String(raw.model ?? 'llama3.2:latest'),
    backends: raw.backends.map((b: any, i: number) => ({
      name: typeof b.name === 'string' ? b.name : bad(`backends[${i}].name`, 'must be a string'),
      tokensPerSecond: num(b.tokensPerSecond, `backends[${i}].tokensPerSecond`, 1),
      numParallel: num(b.numParallel, `backends[${i}].numParallel`, 1),
    })),
    durationS: num(raw.durationS, 'durationS', 1),
    warmupS: num(raw.warmupS ?? 0, 'warmupS', 0),
    smokeDurationS: num(raw.smokeDurationS ?? 4, 'smokeDurationS', 1),
    queueMax: num(raw.queueMax ?? 5000, 'queueMax', 1),
    keys: raw.keys.map((k: any, i: number) => ({
      name:
        typeof k.name === 'string' && /^[A-Za-z0-9._-]{1,32}$/.test(k.name)
          ? k.name
          : bad(`keys[${i}].name`, 'must be a short name'),
      class: typeof k.class === 'string' ? k.class : 'standard',
      weight: num(k.weight ?? 1, `keys[${i}].weight`, 0.001),
      offered: num(k.offered, `keys[${i}].offered`, 0),
      outputTokens: {
        min: num(k.outputTokens?.min, `keys[${i}].outputTokens.min`, 1),
        max: num(k.outputTokens?.max, `keys[${i}].outputTokens.max`, 1),
      },
      idleBaseline: k.idleBaseline === true,
    })),
    modes,
  };
}

/** Requests per second the fleet serves when full, from slots, speed and the mean answer length. */
export function fleetCapacity(sc: PriorityScenario): { tokensPerS: number; requestsPerS: (k: PriorityKey) => number } {
  const tokensPerS = sc.backends.reduce((s, b) => s + b.tokensPerSecond * b.numParallel, 0);
  return { tokensPerS, requestsPerS: (k) => tokensPerS / ((k.outputTokens.min + k.outputTokens.max) / 2) };
}

interface Planned {
  key: string;
  atMs: number;
  outputTokens: number;
}

/** The seeded arrivals of every key over `durationS`: Poisson at `offered` x capacity each. */
export function planArrivals(sc: PriorityScenario, keys: PriorityKey[], durationS: number): Planned[] {
  const rand = mulberry32(sc.seed);
  const cap = fleetCapacity(sc);
  const out: Planned[] = [];
  for (const k of keys) {
    // Each key draws from its own sub-stream so adding a key does not move another's arrivals.
    const r = mulberry32(Math.floor(rand() * 2 ** 32) ^ hash(k.name));
    // Offered load in tokens: a key offering x of the capacity sends x * capacity tokens per second.
    const rate = k.offered * cap.requestsPerS(k);
    let t = 0;
    for (;;) {
      t += (-Math.log(1 - r()) / rate) * 1000;
      if (t >= durationS * 1000) break;
      out.push({
        key: k.name,
        atMs: t,
        outputTokens: k.outputTokens.min + Math.floor(r() * (k.outputTokens.max - k.outputTokens.min + 1)),
      });
    }
  }
  return out.sort((a, b) => a.atMs - b.atMs);
}

function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

interface Outcome {
  key: string;
  atMs: number;
  status: number;
  e2eMs: number;
  queueMs: number;
  finished: boolean;
}

export interface KeyResult {
  key: string;
  class: string;
  weight: number;
  sent: number;
  ok: number;
  refused: number;
  errors: number;
  unfinished: number;
  tokensPerS: number;
  e2eMs: Summary;
  queueMs: Summary;
}

export interface ModeResult {
  mode: string;
  keys: KeyResult[];
  /** Output tokens per second delivered to all keys within the window. */
  totalTokensPerS: number;
  /** Waiting time by class over the run: 1-second bins of arrival time, p95 of the queue time. */
  waitSeries: { cls: string; points: [number, number][] }[];
}

export interface PriorityResult {
  scenario: string;
  description: string;
  durationS: number;
  capacityTokensPerS: number;
  modes: ModeResult[];
  checks: { name: string; measured: number; limit: number; pass: boolean }[];
}

async function runMode(
  ctx: BenchContext,
  sc: PriorityScenario,
  mode: 'idle' | 'fifo' | 'priority',
  durationS: number,
): Promise<ModeResult> {
  const keys = mode === 'idle' ? sc.keys.filter((k) => k.idleBaseline) : sc.keys;
  const plan = planArrivals(sc, keys, durationS);
  const children: Child[] = [];
  try {
    const ports: Record<string, number> = {};
    for (const b of sc.backends) {
      ports[b.name] = await freePort();
      const cfg = join(ctx.tmp, `${sc.name}-${mode}-${b.name}.json`);
      writeFileSync(
        cfg,
        JSON.stringify({
          name: b.name,
          models: [{ name: sc.model, sizeBytes: 2e9 }],
          loaded: [sc.model],
          tokensPerSecond: b.tokensPerSecond,
          promptTokensPerSecond: 100_000,
          numParallel: b.numParallel,
          maxLoadedModels: 1,
          keepAliveMs: -1,
          maxQueue: 100_000,
          maxOutputTokens: 100_000,
          seed: sc.seed,
        }),
      );
      children.push(await startSim(ctx, b.name, ports[b.name], cfg));
    }
    const port = await freePort();
    const cfgPath = join(ctx.tmp, `${sc.name}-${mode}-balancer.json`);
    const withKeys = mode !== 'fifo';
    writeFileSync(
      cfgPath,
      JSON.stringify({
        backends: sc.backends.map((b) => ({
          name: b.name,
          url: `http://127.0.0.1:${ports[b.name]}`,
          parallel: b.numParallel,
          maxLoadedModels: 1,
        })),
        ...(withKeys
          ? { apiKeys: sc.keys.map((k) => ({ name: k.name, key: secretOf(k.name), class: k.class, weight: k.weight })) }
          : {}),
      }),
    );
    children.push(
      await startBalancer(ctx, port, cfgPath, {
        QUEUE_MAX: String(sc.queueMax),
        QUEUE_TIMEOUT_MS: '600000',
        HEALTH_INTERVAL_MS: '1000',
      }),
    );
    for (let i = 0; i < 100; i++) {
      const st = JSON.parse((await httpGet(`http://127.0.0.1:${port}/balancer/status`)).body);
      if (Array.isArray(st.backends) && st.backends.every((b: any) => b.health === 'healthy' && b.inventoryAt)) break;
      await sleep(100);
    }
    ctx.log(`priority: ${sc.name}: ${mode}: ${plan.length} requests over ${durationS}s`);
    const { outcomes, tokens } = await drive(
      `http://127.0.0.1:${port}`,
      sc.model,
      plan,
      durationS,
      sc.warmupS,
      withKeys,
    );
    const windowS = durationS - sc.warmupS;
    const inWindow = outcomes.filter((o) => o.atMs >= sc.warmupS * 1000);
    const keyResults: KeyResult[] = keys.map((k) => {
      const mine = inWindow.filter((o) => o.key === k.name);
      const done = mine.filter((o) => o.status === 200 || !o.finished);
      return {
        key: k.name,
        class: k.class,
        weight: k.weight,
        sent: mine.length,
        ok: mine.filter((o) => o.finished && o.status === 200).length,
        refused: mine.filter((o) => o.status === 429 || o.status === 503).length,
        errors: mine.filter((o) => o.finished && o.status !== 200 && o.status !== 429 && o.status !== 503).length,
        unfinished: mine.filter((o) => !o.finished).length,
        tokensPerS: (tokens.get(k.name) ?? 0) / windowS,
        e2eMs: summarize(done.map((o) => o.e2eMs)),
        queueMs: summarize(mine.filter((o) => o.finished && o.status === 200).map((o) => o.queueMs)),
      };
    });
    const waitSeries = [...new Set(keys.map((k) => k.class))].map((cls) => {
      const names = new Set(keys.filter((k) => k.class === cls).map((k) => k.name));
      const bins = new Map<number, number[]>();
      for (const o of outcomes) {
        if (!names.has(o.key) || !(o.status === 200 || !o.finished)) continue;
        const bin = Math.floor(o.atMs / 1000);
        // A request still waiting at the end has waited at least its whole time so far.
        const wait = o.finished ? o.queueMs : o.e2eMs;
        if (!bins.has(bin)) bins.set(bin, []);
        bins.get(bin)!.push(wait);
      }
      const points = [...bins.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([bin, v]) => [bin + 0.5, summarize(v).p95] as [number, number]);
      return { cls: mode === 'fifo' ? `${cls} (fifo)` : cls, points };
    });
    return { mode, keys: keyResults, totalTokensPerS: keyResults.reduce((s, k) => s + k.tokensPerS, 0), waitSeries };
  } finally {
    await Promise.all(children.reverse().map((c) => c.stop()));
  }
}

function secretOf(name: string): string {
  return `bench-key-${name}-0123456789`;
}

/** Open loop: each request at its time; every token line counted when it arrives; all cut at the end. */
function drive(
  base: string,
  model: string,
  plan: Planned[],
  durationS: number,
  warmupS: number,
  withKeys: boolean,
): Promise<{ outcomes: Outcome[]; tokens: Map<string, number> }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const u = new URL('/api/chat', base);
  const outcomes: Outcome[] = [];
  const tokens = new Map<string, number>();
  const open = new Set<{ req: http.ClientRequest; o: Outcome; start: number }>();
  const t0 = performance.now() + 50;
  const windowStart = t0 + warmupS * 1000;
  return new Promise((done) => {
    for (const p of plan) {
      setTimeout(
        () => {
          const body = JSON.stringify({
            model,
            messages: [{ role: 'user', content: `hello from ${p.key}` }],
            stream: true,
            options: { num_predict: p.outputTokens },
          });
          const headers: Record<string, string | number> = {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          };
          if (withKeys) headers['x-api-key'] = secretOf(p.key);
          const start = performance.now();
          const o: Outcome = { key: p.key, atMs: start - t0, status: 0, e2eMs: 0, queueMs: 0, finished: false };
          outcomes.push(o);
          const req = http.request(
            { host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers },
            (res) => {
              o.status = res.statusCode ?? 0;
              o.queueMs = Number(res.headers['x-balancer-queue-ms'] ?? 0);
              let partial = '';
              res.on('data', (d: Buffer) => {
                if (o.status !== 200) return;
                // One NDJSON line per token from the simulator; the final line carries done:true.
                const s = partial + d.toString('latin1');
                let n = 0;
                let at = s.indexOf('"done":false');
                while (at !== -1) {
                  n++;
                  at = s.indexOf('"done":false', at + 12);
                }
                partial = s.slice(Math.max(0, s.length - 12));
                if (performance.now() >= windowStart) tokens.set(p.key, (tokens.get(p.key) ?? 0) + n);
              });
              res.on('end', () => {
                o.finished = true;
                o.e2eMs = performance.now() - start;
                open.delete(entry);
              });
              res.on('error', () => undefined);
            },
          );
          const entry = { req, o, start };
          open.add(entry);
          req.on('error', () => {
            if (!o.finished) o.e2eMs = performance.now() - start;
            open.delete(entry);
          });
          req.end(body);
        },
        Math.max(0, t0 + p.atMs - performance.now()),
      );
    }
    setTimeout(
      () => {
        const now = performance.now();
        for (const e of open) {
          e.o.e2eMs = now - e.start;
          e.req.destroy();
        }
        agent.destroy();
        done({ outcomes, tokens });
      },
      Math.max(0, t0 + durationS * 1000 - performance.now()),
    );
  });
}

export function priorityChecks(sc: PriorityScenario, modes: ModeResult[]): PriorityResult['checks'] {
  const checks: PriorityResult['checks'] = [];
  const get = (m: string): ModeResult | undefined => modes.find((x) => x.mode === m);
  const idle = get('idle');
  const fifo = get('fifo');
  const prio = get('priority');
  if (!prio) return checks;
  const byClass = (m: ModeResult, cls: string): KeyResult[] => m.keys.filter((k) => k.class === cls);
  for (const k of sc.keys.filter((x) => x.idleBaseline)) {
    const base = idle?.keys.find((x) => x.key === k.name);
    const p = prio.keys.find((x) => x.key === k.name);
    if (base && p)
      checks.push({
        name: `${k.name} (${k.class}) p95 e2e <= 1.5x its idle p95`,
        measured: p.e2eMs.p95,
        limit: base.e2eMs.p95 * 1.5,
        pass: p.e2eMs.p95 <= base.e2eMs.p95 * 1.5,
      });
  }
  // What is left over for the lower classes: the fleet's throughput when full (the FIFO run keeps it
  // full throughout) less what the higher classes took in the priority run.
  const batch = byClass(prio, 'batch');
  if (fifo && batch.length > 0) {
    const higher = prio.keys.filter((k) => k.class !== 'batch').reduce((s, k) => s + k.tokensPerS, 0);
    const left = fifo.totalTokensPerS - higher;
    const got = batch.reduce((s, k) => s + k.tokensPerS, 0);
    checks.push({
      name: 'batch share of the capacity left over >= 0.9',
      measured: got / left,
      limit: 0.9,
      pass: got / left >= 0.9,
    });
  }
  // Weighted share: keys of one class, both saturating; served tokens within +-10 % of the weights' ratio.
  const std = byClass(prio, 'standard');
  if (std.length === 2) {
    const [a, b] = std[0].weight >= std[1].weight ? [std[0], std[1]] : [std[1], std[0]];
    const want = a.weight / b.weight;
    const got = a.tokensPerS / b.tokensPerS;
    checks.push({
      name: `served ratio ${a.key}:${b.key} within 10 % of ${fmt(want, 1)}:1`,
      measured: got,
      limit: want,
      pass: Math.abs(got / want - 1) <= 0.1,
    });
  }
  return checks;
}

export function priorityTables(r: PriorityResult): string {
  const lines: string[] = [];
  lines.push(
    `### ${r.scenario}`,
    '',
    r.description,
    '',
    `Fleet capacity (nominal): ${fmt(r.capacityTokensPerS, 0)} tokens/s; window ${r.durationS} s.`,
    '',
  );
  lines.push(
    '| mode | key | class | weight | sent | ok | refused | unfinished | tokens/s | share | e2e p50 ms | e2e p95 ms | queue p95 ms |',
  );
  lines.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const m of r.modes) {
    for (const k of m.keys) {
      const share = m.totalTokensPerS > 0 ? k.tokensPerS / m.totalTokensPerS : NaN;
      lines.push(
        `| ${m.mode} | ${k.key} | ${m.mode === 'fifo' ? '(one FIFO)' : k.class} | ${k.weight} | ${k.sent} | ${k.ok} | ${k.refused} | ${k.unfinished} | ${fmt(k.tokensPerS, 0)} | ${fmt(share * 100, 1)} % | ${fmt(k.e2eMs.p50, 0)} | ${fmt(k.e2eMs.p95, 0)} | ${fmt(k.queueMs.p95, 0)} |`,
      );
    }
  }
  lines.push('');
  if (r.checks.length) {
    lines.push('| check | measured | limit | pass |', '|---|---:|---:|---|');
    for (const c of r.checks)
      lines.push(`| ${c.name} | ${fmt(c.measured, 2)} | ${fmt(c.limit, 2)} | ${c.pass ? 'yes' : 'NO'} |`);
    lines.push('');
  }
  return lines.join('\n');
}

export async function runPriorityScenario(ctx: BenchContext, sc: PriorityScenario): Promise<PriorityResult> {
  const durationS = ctx.smoke ? sc.smokeDurationS : sc.durationS;
  const scn = ctx.smoke ? { ...sc, warmupS: Math.min(sc.warmupS, durationS / 4) } : sc;
  const modes: ModeResult[] = [];
  for (const m of sc.modes) modes.push(await runMode(ctx, scn, m, durationS));
  return {
    scenario: sc.name,
    description: sc.description,
    durationS: durationS - scn.warmupS,
    capacityTokensPerS: fleetCapacity(sc).tokensPerS,
    modes,
    checks: priorityChecks(sc, modes),
  };
}

const COLOURS: Record<string, string> = {
  interactive: '#c53030',
  standard: '#2b6cb0',
  batch: '#2f855a',
  sheddable: '#975a16',
};

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const root = repoRoot();
  let out = resolve(root, 'bench-results/priority');
  const files: string[] = [];
  let smoke = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') out = resolve(argv[++i]);
    else if (argv[i] === '--scenario') files.push(resolve(argv[++i]));
    else if (argv[i] === '--smoke') smoke = true;
    else {
      process.stderr.write(
        `unknown argument ${argv[i]}\nusage: node dist/tools/bench/priority.js [--scenario <file>]... [--out <dir>] [--smoke]\n`,
      );
      return 2;
    }
  }
  const dir = join(root, 'tools/bench/scenarios/priority');
  if (files.length === 0)
    for (const f of readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort())
      files.push(join(dir, f));
  const scenarios = files.map((f) => parsePriorityScenario(JSON.parse(readFileSync(f, 'utf8')), f));
  const tmp = mkdtempSync(join(tmpdir(), 'bench-priority-'));
  const ctx: BenchContext = {
    root,
    tmp,
    smoke,
    loadGen: 'autocannon',
    hasNginx: false,
    hasHaproxy: false,
    agents: false,
    log: (m) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`),
  };
  mkdirSync(out, { recursive: true });
  const results: PriorityResult[] = [];
  try {
    for (const sc of scenarios) results.push(await runPriorityScenario(ctx, sc));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const md = ['## Priority classes and fair share', '', ...results.map(priorityTables)].join('\n');
  writeFileSync(join(out, 'priority.md'), md);
  writeFileSync(join(out, 'priority.json'), JSON.stringify(results, null, 2));
  for (const r of results) {
    const series = r.modes
      .filter((m) => m.mode !== 'idle')
      .flatMap((m) =>
        m.waitSeries.map((s) => ({
          label: s.cls,
          points: s.points,
          colour: COLOURS[s.cls.replace(' (fifo)', '')] ?? '#4a5568',
          dashed: m.mode === 'fifo',
        })),
      );
    writeFileSync(
      join(out, `wait-by-class-${r.scenario}.svg`),
      lineChart({
        title: `Waiting time by class: ${r.scenario} (p95 per second of arrival)`,
        xLabel: 'arrival time (s)',
        unit: 'ms',
        series,
        log: true,
      }),
    );
  }
  process.stdout.write(md + '\n');
  const failed = results.flatMap((r) => r.checks.filter((c) => !c.pass));
  return failed.length === 0 ? 0 : 1;
}

if (require.main === module)
  main().then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`${(e as Error).stack ?? e}\n`);
      process.exit(2);
    },
  );
