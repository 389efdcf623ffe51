/**
 * An offline model of the random-cluster suite: the same clusters and request schedules, served by
 * an event-driven model of the simulator's scheduler instead of real processes, so that a routing
 * idea can be tried on a hundred clusters in a second before it is built into the balancer and
 * measured for real. Routing here knows the ground truth (speeds, slots, rooms, load times): it
 * says what a policy could reach with perfect knowledge, not what the balancer reaches while it
 * learns. Checked against the real suite in docs/benchmarks.md (the pools' p95 within about 15 %).
 *
 * The model of a server (as libs/ollama-sim): each loaded model has `numParallel` slots and a FIFO
 * queue; a request's service time is its prompt at the prompt speed plus its output tokens at the
 * token speed; a model not loaded is loaded (size x ms per GB) once there is room, evicting the least
 * recently used idle model when the room is full, else waiting until one goes idle; requests for a
 * loaded model are served meanwhile (Ollama's fast path). No contention between models or slots.
 *
 *   node dist/tools/bench/offline-model.js [--seed 1] [--clusters 20] [--cluster a,b] [--policies greedy,fill]
 *
 * `--policies` also takes `oracle-rate` (fill told the true offered load) and the bounds `rollout`
 * and `rollout-warm` (routing that knows the future; seconds per cluster instead of milliseconds).
 */
import { clusterSeeds, generateCluster, RandomCluster, sentLoad } from './random-cluster';
import { generateWorkload, PlannedRequest, ScenarioBackend } from './scenario';
import { median, percentile } from './stats';

export interface ModelRequest extends PlannedRequest {
  backend?: string;
  doneAt?: number;
  end?: number;
}

interface Runner {
  running: ModelRequest[];
  queue: ModelRequest[];
  lastUsed: number;
  readyAt: number;
}

/** One simulated server as the policies see it. */
export interface ModelServer {
  readonly b: ScenarioBackend;
  readonly name: string;
  /** Loaded (or loading: readyAt in the future) models. */
  readonly loaded: Map<string, Runner>;
  /** Models waiting for room to load, in order, with the requests waiting for each. */
  readonly waiting: Map<string, ModelRequest[]>;
  inFlight: number;
  /** In flight per model (what each per-model nginx upstream counts). */
  readonly inFlightBy: Map<string, number>;
}

/** What a policy may look at and do. */
export interface ModelView {
  readonly servers: readonly ModelServer[];
  readonly cluster: RandomCluster;
  now(): number;
  serviceMs(b: ScenarioBackend, r: PlannedRequest): number;
  /** When `r` would start on `s` if sent now (its model's FIFO there), or null where it is not loaded. */
  startAt(s: ModelServer, r: PlannedRequest): number | null;
  /** Loads `model` on `s` with no request riding on it (a background load). */
  loadInBackground(s: ModelServer, model: string): void;
}

export type ModelPolicy = (v: ModelView, r: ModelRequest) => ModelServer;

export interface ModelResult {
  p50Ms: number;
  p95Ms: number;
  loads: number;
  requests: ModelRequest[];
}

/** The simulator's time for one request on `b` once it holds a slot. */
export function modelServiceMs(b: ScenarioBackend, r: Pick<PlannedRequest, 'promptTokens' | 'outputTokens'>): number {
  return (r.promptTokens / b.promptTokensPerSecond) * 1000 + (r.outputTokens / b.tokensPerSecond) * 1000;
}

/** Runs the cluster's request schedule through `policy` (made for this cluster) and returns the latencies. */
export function runModel(
  c: RandomCluster,
  makePolicy: (c: RandomCluster) => ModelPolicy,
  plan: readonly PlannedRequest[] = generateWorkload(c.scenario),
): ModelResult {
  const sc = c.scenario;
  const size = new Map(sc.models.map((m) => [m.name, m.sizeGB]));
  const servers: ModelServer[] = sc.backends.map((b) => ({
    b,
    name: b.name,
    loaded: new Map(b.loaded.map((m) => [m, { running: [], queue: [], lastUsed: 0, readyAt: 0 }])),
    waiting: new Map(),
    inFlight: 0,
    inFlightBy: new Map(),
  }));
  // Events in time order; ties in the order they were scheduled.
  const events: { t: number; seq: number; run: () => void }[] = [];
  let seq = 0;
  const at = (t: number, run: () => void) => {
    const e = { t, seq: seq++, run };
    let i = events.length;
    while (i > 0 && (events[i - 1].t > t || (events[i - 1].t === t && events[i - 1].seq > e.seq))) i--;
    events.splice(i, 0, e);
  };
  let now = 0;
  let loads = 0;
  const done: ModelRequest[] = [];

  const start = (s: ModelServer, run: Runner, r: ModelRequest) => {
    r.end = now + modelServiceMs(s.b, r);
    run.running.push(r);
    at(r.end, () => finish(s, run, r));
  };
  const finish = (s: ModelServer, run: Runner, r: ModelRequest) => {
    run.running.splice(run.running.indexOf(r), 1);
    run.lastUsed = now;
    s.inFlight--;
    s.inFlightBy.set(r.model, (s.inFlightBy.get(r.model) ?? 1) - 1);
    r.doneAt = now;
    done.push(r);
    const next = run.queue.shift();
    if (next) start(s, run, next);
    loadWhatFits(s);
  };
  /** Starts the loads waiting on `s` while there is room (evicting the least recently used idle model). */
  const loadWhatFits = (s: ModelServer) => {
    for (const [model, riders] of s.waiting) {
      if (s.loaded.size >= s.b.maxLoadedModels) {
        let victim: string | null = null;
        for (const [name, run] of s.loaded)
          if (
            run.readyAt <= now &&
            run.running.length === 0 &&
            run.queue.length === 0 &&
            (victim === null || run.lastUsed < s.loaded.get(victim)!.lastUsed)
          )
            victim = name;
        if (victim === null) return;
        s.loaded.delete(victim);
      }
      s.waiting.delete(model);
      loads++;
      const run: Runner = {
        running: [],
        queue: riders,
        lastUsed: now,
        readyAt: now + size.get(model)! * s.b.loadMsPerGB,
      };
      s.loaded.set(model, run);
      at(run.readyAt, () => {
        const q = run.queue;
        run.queue = [];
        for (const r of q)
          if (run.running.length < s.b.numParallel) start(s, run, r);
          else run.queue.push(r);
      });
    }
  };
  const send = (s: ModelServer, r: ModelRequest) => {
    s.inFlight++;
    s.inFlightBy.set(r.model, (s.inFlightBy.get(r.model) ?? 0) + 1);
    r.backend = s.name;
    const run = s.loaded.get(r.model);
    if (run) {
      if (run.readyAt <= now && run.running.length < s.b.numParallel && run.queue.length === 0) start(s, run, r);
      else run.queue.push(r);
      return;
    }
    const riders = s.waiting.get(r.model);
    if (riders) riders.push(r);
    else s.waiting.set(r.model, [r]);
    loadWhatFits(s);
  };

  const view: ModelView = {
    servers,
    cluster: c,
    now: () => now,
    serviceMs: modelServiceMs,
    startAt(s, r) {
      const run = s.loaded.get(r.model);
      if (!run) return null;
      const ends = run.running.map((x) => x.end!).sort((a, b) => a - b);
      const free = Array.from({ length: s.b.numParallel }, (_, i) =>
        i < ends.length ? ends[i] : Math.max(now, run.readyAt),
      );
      for (const q of run.queue) {
        free.sort((a, b) => a - b);
        free[0] = Math.max(free[0], run.readyAt) + modelServiceMs(s.b, q);
      }
      return Math.max(Math.min(...free), run.readyAt, now);
    },
    loadInBackground(s, model) {
      if (s.loaded.has(model) || s.waiting.has(model) || !s.b.models.includes(model)) return;
      s.waiting.set(model, []);
      loadWhatFits(s);
    },
  };
  const policy = makePolicy(c);
  for (const p of plan) {
    const r: ModelRequest = { ...p };
    at(r.atMs, () => send(policy(view, r), r));
  }
  while (events.length > 0) {
    const e = events.shift()!;
    now = e.t;
    e.run();
  }
  const latencies = done.map((r) => r.doneAt! - r.atMs);
  return { p50Ms: percentile(latencies, 50), p95Ms: percentile(latencies, 95), loads, requests: done };
}

/**
 * The expert's per-model nginx pools: least_conn over the model's pool (connections counted per
 * upstream, that is per model), weighted by capacity; ties by nginx's smooth weighted round robin.
 */
export function poolsPolicy(c: RandomCluster): ModelPolicy {
  const current = new Map<string, number>();
  return (v, r) => {
    let tied: { s: ModelServer; conns: number; weight: number }[] = [];
    for (const e of c.expert[r.model]) {
      const s = v.servers.find((x) => x.name === e.name)!;
      const conns = s.inFlightBy.get(r.model) ?? 0;
      const t = tied[0];
      if (t === undefined || conns * t.weight < t.conns * e.weight) tied = [{ s, conns, weight: e.weight }];
      else if (conns * t.weight === t.conns * e.weight) tied.push({ s, conns, weight: e.weight });
    }
    if (tied.length === 1) return tied[0].s;
    let total = 0;
    let best: (typeof tied)[number] | null = null;
    const key = (t: (typeof tied)[number]) => `${r.model}\n${t.s.name}`;
    for (const t of tied) {
      current.set(key(t), (current.get(key(t)) ?? 0) + t.weight);
      total += t.weight;
      if (best === null || current.get(key(t))! > current.get(key(best))!) best = t;
    }
    current.set(key(best!), current.get(key(best!))! - total);
    return best!.s;
  };
}

/**
 * Expected completion with perfect knowledge: the warm server where the request would be done
 * soonest; a load into free room (evicting nothing) when it is done sooner by 10 % (at least
 * 100 ms); with `fillIdle`, while the request would wait for a slot and no copy is loading, a
 * background copy on a server that holds nothing (close to the balancer's scale-out onto idle
 * servers, 6ba443a, which may load several at once). Where the model is warm
 * nowhere and cannot load into free room, the expert's first server for it (a cold load).
 */
export function greedyPolicy(opts: { fillIdle?: boolean } = {}): (c: RandomCluster) => ModelPolicy {
  return (c) => (v, r) => {
    const now = v.now();
    let best: { s: ModelServer; t: number } | null = null;
    for (const s of v.servers) {
      const start = v.startAt(s, r);
      if (start === null) continue;
      const t = start + v.serviceMs(s.b, r);
      if (best === null || t < best.t) best = { s, t };
    }
    if (opts.fillIdle && best !== null && best.t - v.serviceMs(best.s.b, r) > now + 1) {
      const loading = v.servers.some((s) => (s.loaded.get(r.model)?.readyAt ?? 0) > now || s.waiting.has(r.model));
      let idle: ModelServer | null = null;
      if (!loading)
        for (const s of v.servers)
          if (
            s.loaded.size === 0 &&
            s.waiting.size === 0 &&
            s.b.models.includes(r.model) &&
            (idle === null || s.b.tokensPerSecond * s.b.numParallel > idle.b.tokensPerSecond * idle.b.numParallel)
          )
            idle = s;
      if (idle !== null) v.loadInBackground(idle, r.model);
    }
    let cold: { s: ModelServer; t: number } | null = null;
    const size = c.scenario.models.find((m) => m.name === r.model)!.sizeGB;
    for (const s of v.servers) {
      if (s.loaded.has(r.model) || s.waiting.has(r.model) || !s.b.models.includes(r.model)) continue;
      if (s.loaded.size + s.waiting.size >= s.b.maxLoadedModels) continue;
      const t = now + size * s.b.loadMsPerGB + v.serviceMs(s.b, r);
      if (cold === null || t < cold.t) cold = { s, t };
    }
    if (cold !== null && (best === null || cold.t + Math.max(100, 0.1 * (best.t - now)) < best.t)) return cold.s;
    if (best !== null) return best.s;
    return v.servers.find((s) => s.name === c.expert[r.model][0].name)!;
  };
}

/**
 * `fill`, told each model's true offered load (the generator's rate and mean output length, which a
 * router can only estimate): whenever the model's load exceeds what its loaded copies serve (slots x
 * tokens/s), a background copy into free room (evicting nothing) on the largest server that has
 * room, one at a time per model. Not a policy a router can run either; it says what a perfect
 * demand estimate adds to `fill`.
 */
export function oracleRatePolicy(c: RandomCluster): ModelPolicy {
  const fill = greedyPolicy({ fillIdle: true })(c);
  return (v, r) => {
    const chosen = fill(v, r);
    const now = v.now();
    let capacity = 0;
    for (const s of v.servers) {
      const run = s.loaded.get(r.model);
      if (s.waiting.has(r.model) || (run !== undefined && run.readyAt > now)) return chosen;
      if (run !== undefined) capacity += s.b.numParallel * s.b.tokensPerSecond;
    }
    if (c.perModel[r.model].ratePerS * c.meanOutputTokens <= capacity) return chosen;
    let room: ModelServer | null = null;
    for (const s of v.servers)
      if (
        !s.loaded.has(r.model) &&
        s.b.models.includes(r.model) &&
        s.loaded.size + s.waiting.size < s.b.maxLoadedModels &&
        (room === null || s.b.numParallel * s.b.tokensPerSecond > room.b.numParallel * room.b.tokensPerSecond)
      )
        room = s;
    if (room !== null) v.loadInBackground(room, r.model);
    return chosen;
  };
}

export const MODEL_POLICIES: Record<string, (c: RandomCluster) => ModelPolicy> = {
  pools: poolsPolicy,
  greedy: greedyPolicy(),
  fill: greedyPolicy({ fillIdle: true }),
  'oracle-rate': oracleRatePolicy,
};

/**
 * `base` with its first decisions forced to the named servers (`base` still sees those requests, so
 * its own background loads stay as they were). `onForced` sees each forced request's view.
 */
function forcedPolicy(
  base: (c: RandomCluster) => ModelPolicy,
  decisions: readonly string[],
  onForced?: (v: ModelView, r: ModelRequest, forced: ModelServer, baseChoice: ModelServer, i: number) => void,
): (c: RandomCluster) => ModelPolicy {
  return (c) => {
    const b = base(c);
    let k = 0;
    return (v, r) => {
      const i = k++;
      const chosen = b(v, r);
      if (i >= decisions.length) return chosen;
      const s = v.servers.find((x) => x.name === decisions[i])!;
      onForced?.(v, r, s, chosen, i);
      return s;
    };
  };
}

/**
 * A bound, not a policy: one-step rollout of `base` with the future known. Request by request, every
 * server with the model on disk is tried, the rest of the schedule is served by `base`, and the
 * server whose run ends with the lowest p95 (then p50) is kept. It knows every arrival and every
 * output length ahead, which no router does; what it reaches says how much of a gap to the pools is
 * closable by routing at all. With `warmOnly`, a request goes only where `base` sends it or where its
 * model is loaded (no load that `base` would not start). Costs requests x servers runs of the model.
 */
export function runRollout(
  c: RandomCluster,
  plan: readonly PlannedRequest[] = generateWorkload(c.scenario),
  opts: { base?: (c: RandomCluster) => ModelPolicy; warmOnly?: boolean } = {},
): ModelResult {
  const base = opts.base ?? MODEL_POLICIES.fill;
  const decisions: string[] = [];
  for (let i = 0; i < plan.length; i++) {
    let best: { name: string; score: number } | null = null;
    for (const b of c.scenario.backends) {
      if (!b.models.includes(plan[i].model)) continue;
      let cold = false;
      const res = runModel(
        c,
        forcedPolicy(base, [...decisions, b.name], (v, r, s, chosen, k) => {
          if (k === i && s !== chosen && v.startAt(s, r) === null) cold = true;
        }),
        plan,
      );
      if (opts.warmOnly && cold) continue;
      const score = res.p95Ms + res.p50Ms * 1e-3;
      if (best === null || score < best.score) best = { name: b.name, score };
    }
    decisions.push(best!.name);
  }
  return runModel(c, forcedPolicy(base, decisions), plan);
}

/** Bounds run per cluster by name (they need the whole schedule), beside the policies. */
export const MODEL_BOUNDS: Record<string, (c: RandomCluster, plan: readonly PlannedRequest[]) => ModelResult> = {
  rollout: (c, plan) => runRollout(c, plan),
  'rollout-warm': (c, plan) => runRollout(c, plan, { warmOnly: true }),
};

function main(argv: string[]): void {
  const arg = (k: string): string | undefined => {
    const i = argv.indexOf(`--${k}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const durationS = 18;
  const seeds = arg('cluster')
    ? arg('cluster')!.split(',').map(Number)
    : clusterSeeds(Number(arg('seed') ?? 1), Number(arg('clusters') ?? 20));
  const names = (arg('policies') ?? 'greedy,fill').split(',');
  const known = [...Object.keys(MODEL_POLICIES), ...Object.keys(MODEL_BOUNDS)];
  for (const n of names) if (!known.includes(n)) throw new Error(`unknown policy ${n} (${known.join(', ')})`);
  if (!names.includes('pools')) names.unshift('pools');
  const ratios = new Map<string, number[]>(names.map((n) => [n, []]));
  for (const seed of seeds) {
    const c = generateCluster(seed, { durationS });
    const plan = generateWorkload(c.scenario);
    const warmEnough = c.allWarm && Math.max(...Object.values(sentLoad(c, plan, durationS))) <= 1;
    const res = new Map(
      names.map((n) => [n, MODEL_POLICIES[n] ? runModel(c, MODEL_POLICIES[n], plan) : MODEL_BOUNDS[n](c, plan)]),
    );
    const pools = res.get('pools')!.p95Ms;
    for (const n of names) ratios.get(n)!.push(res.get(n)!.p95Ms / pools);
    const cells = names.map((n) => {
      const x = res.get(n)!;
      return `${n} ${(x.p95Ms / 1000).toFixed(2)} s (${x.loads} loads)`;
    });
    console.log(`${String(seed).padStart(11)} ${warmEnough ? 'warm' : '    '}  ${cells.join('  ')}`);
  }
  for (const n of names) {
    const rs = ratios.get(n)!;
    console.log(
      `${n.padEnd(8)} p95 / pools: median ${median(rs).toFixed(3)}, at or under 1 on ${rs.filter((x) => x <= 1).length}/${rs.length}`,
    );
  }
}

if (require.main === module) main(process.argv.slice(2));
