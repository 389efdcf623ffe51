/**
 * Routing-suite scenario files: a simulated cluster and a seeded workload.
 * Parsing is strict and every error names the offending field, e.g.
 * `scenario unequal.json: backends[1].tokensPerSecond must be a number > 0 (got "fast")`.
 */
// Relative, like the simulator's: the bench also runs under plain ts-node (context.ts).
import { normaliseModelName } from '../../libs/ollama-names/src';
import { mulberry32 } from './stats';

export interface ScenarioModel {
  /** `name:tag` (a bare name gets `:latest`). */
  name: string;
  sizeGB: number;
  /** Cold-load time of this model (overrides the backend's loadMsPerGB). */
  loadMs?: number;
}

export interface ScenarioBackend {
  name: string;
  /** Output speed per request (tokens/s); a GPU three times faster has three times this. */
  tokensPerSecond: number;
  promptTokensPerSecond: number;
  /** Ollama's OLLAMA_NUM_PARALLEL: slots per loaded model. */
  numParallel: number;
  vramGB: number;
  /** Ollama's OLLAMA_MAX_LOADED_MODELS. */
  maxLoadedModels: number;
  loadMsPerGB: number;
  /** Models on disk (default: every scenario model). */
  models: string[];
  /** Models loaded at start. */
  loaded: string[];
}

export interface Phase {
  durationS: number;
  /** Mean arrival rate (requests/s, Poisson). */
  ratePerS: number;
}

export interface Range {
  min: number;
  max: number;
}

export interface Workload {
  phases: Phase[];
  mix: { model: string; weight: number }[];
  promptTokens: Range;
  outputTokens: Range;
  stream: boolean;
  /** `share` of requests belong to one of `count` conversations (sent with X-Session-Id). */
  sessions: { count: number; share: number };
}

export interface Scenario {
  name: string;
  description: string;
  seed: number;
  models: ScenarioModel[];
  backends: ScenarioBackend[];
  workload: Workload;
  /** Hand-written per-model pools (backend names) for the nginx "expert" peer; default: where each model is loaded at start. */
  pools: Record<string, string[]>;
  /** Total duration used by `--suite smoke`. */
  smokeDurationS: number;
  /** Targets checked for the balancer's default policy: p95 at most this multiple of each peer's p95. */
  targets: { p95VsPools: number; p95VsNginxLeastConn?: number };
}

export class ScenarioError extends Error {}

/** A model name as Ollama matches it (lower-cased, `:latest` when untagged): libs/ollama-names. */
export function normaliseModel(name: string): string {
  return normaliseModelName(name);
}

type Obj = Record<string, unknown>;

class Reader {
  constructor(private readonly source: string) {}

  fail(field: string, value: unknown, why: string): never {
    let shown: string;
    try {
      shown = JSON.stringify(value) ?? 'undefined';
    } catch {
      shown = String(value);
    }
    if (shown.length > 80) shown = shown.slice(0, 77) + '...';
    throw new ScenarioError(`scenario ${this.source}: ${field} ${why} (got ${shown})`);
  }

  obj(v: unknown, field: string): Obj {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(field, v, 'must be an object');
    return v as Obj;
  }

  arr(v: unknown, field: string, minLen = 1): unknown[] {
    if (!Array.isArray(v) || v.length < minLen) this.fail(field, v, `must be an array with at least ${minLen} item(s)`);
    return v as unknown[];
  }

  str(v: unknown, field: string, re = /^[A-Za-z0-9._:/-]{1,100}$/): string {
    if (typeof v !== 'string' || !re.test(v)) this.fail(field, v, `must be a string matching ${re}`);
    return v as string;
  }

  num(
    v: unknown,
    field: string,
    min: number,
    max = Number.MAX_SAFE_INTEGER,
    opts: { int?: boolean; exclusiveMin?: boolean; def?: number } = {},
  ): number {
    if (v === undefined && opts.def !== undefined) return opts.def;
    const okType = typeof v === 'number' && Number.isFinite(v) && (!opts.int || Number.isInteger(v));
    const okRange = okType && (opts.exclusiveMin ? (v as number) > min : (v as number) >= min) && (v as number) <= max;
    if (!okRange)
      this.fail(
        field,
        v,
        `must be ${opts.int ? 'an integer' : 'a number'} ${opts.exclusiveMin ? '>' : '>='} ${min}${max < Number.MAX_SAFE_INTEGER ? ` and <= ${max}` : ''}`,
      );
    return v as number;
  }

  range(v: unknown, field: string): Range {
    const o = this.obj(v, field);
    const min = this.num(o.min, `${field}.min`, 0, 1e6, { int: true });
    const max = this.num(o.max, `${field}.max`, min, 1e6, { int: true });
    return { min, max };
  }

  known(o: Obj, field: string, keys: string[]): void {
    for (const k of Object.keys(o))
      if (!keys.includes(k) && !k.startsWith('_'))
        this.fail(`${field}.${k}`, o[k], `is not a known field (known: ${keys.join(', ')})`);
  }
}

/** Validates a parsed scenario object. `source` names the file in errors. */
export function parseScenario(raw: unknown, source = '<inline>'): Scenario {
  const r = new Reader(source);
  const root = r.obj(raw, '(root)');
  r.known(root, '(root)', [
    'name',
    'description',
    'seed',
    'models',
    'backends',
    'workload',
    'pools',
    'smokeDurationS',
    'targets',
  ]);
  const name = r.str(root.name, 'name', /^[A-Za-z0-9._-]{1,64}$/);
  const description = root.description === undefined ? '' : String(root.description);
  const seed = r.num(root.seed, 'seed', 0, 2 ** 32 - 1, { int: true, def: 1 });

  const models = r.arr(root.models, 'models').map((m, i) => {
    const o = r.obj(m, `models[${i}]`);
    r.known(o, `models[${i}]`, ['name', 'sizeGB', 'loadMs']);
    return {
      name: normaliseModel(r.str(o.name, `models[${i}].name`)),
      sizeGB: r.num(o.sizeGB, `models[${i}].sizeGB`, 0, 2048, { exclusiveMin: true }),
      loadMs: o.loadMs === undefined ? undefined : r.num(o.loadMs, `models[${i}].loadMs`, 0, 600_000),
    } as ScenarioModel;
  });
  const modelNames = new Set(models.map((m) => m.name));
  if (modelNames.size !== models.length)
    r.fail(
      'models',
      models.map((m) => m.name),
      'must not name a model twice',
    );
  const modelRef = (v: unknown, field: string): string => {
    const n = normaliseModel(r.str(v, field));
    if (!modelNames.has(n)) r.fail(field, v, `must name a model listed in models (${[...modelNames].join(', ')})`);
    return n;
  };

  const backends = r.arr(root.backends, 'backends').map((b, i) => {
    const f = `backends[${i}]`;
    const o = r.obj(b, f);
    r.known(o, f, [
      'name',
      'tokensPerSecond',
      'promptTokensPerSecond',
      'numParallel',
      'vramGB',
      'maxLoadedModels',
      'loadMsPerGB',
      'models',
      'loaded',
    ]);
    const disk =
      o.models === undefined
        ? [...modelNames]
        : r.arr(o.models, `${f}.models`).map((m, j) => modelRef(m, `${f}.models[${j}]`));
    const loaded =
      o.loaded === undefined ? [] : r.arr(o.loaded, `${f}.loaded`, 0).map((m, j) => modelRef(m, `${f}.loaded[${j}]`));
    const be: ScenarioBackend = {
      name: r.str(o.name, `${f}.name`, /^[A-Za-z0-9._-]{1,64}$/),
      tokensPerSecond: r.num(o.tokensPerSecond, `${f}.tokensPerSecond`, 0, 1e7, { exclusiveMin: true }),
      promptTokensPerSecond: r.num(o.promptTokensPerSecond, `${f}.promptTokensPerSecond`, 0, 1e9, {
        exclusiveMin: true,
        def: 2000,
      }),
      numParallel: r.num(o.numParallel, `${f}.numParallel`, 1, 4096, { int: true }),
      vramGB: r.num(o.vramGB, `${f}.vramGB`, 0, 1e5, { exclusiveMin: true }),
      maxLoadedModels: r.num(o.maxLoadedModels, `${f}.maxLoadedModels`, 1, 64, { int: true }),
      loadMsPerGB: r.num(o.loadMsPerGB, `${f}.loadMsPerGB`, 0, 600_000, { def: 1000 }),
      models: disk,
      loaded,
    };
    loaded.forEach((m, j) => {
      if (!disk.includes(m)) r.fail(`${f}.loaded[${j}]`, m, "must also be on the backend's disk (models)");
    });
    if (loaded.length > be.maxLoadedModels)
      r.fail(`${f}.loaded`, o.loaded, `holds more than maxLoadedModels (${be.maxLoadedModels})`);
    const size = loaded.reduce((s, m) => s + models.find((x) => x.name === m)!.sizeGB, 0);
    if (size > be.vramGB) r.fail(`${f}.loaded`, o.loaded, `needs ${size} GB, more than vramGB (${be.vramGB})`);
    return be;
  });
  const backendNames = new Set(backends.map((b) => b.name));
  if (backendNames.size !== backends.length)
    r.fail(
      'backends',
      backends.map((b) => b.name),
      'must not name a backend twice',
    );

  const w = r.obj(root.workload, 'workload');
  r.known(w, 'workload', ['phases', 'mix', 'promptTokens', 'outputTokens', 'stream', 'sessions']);
  const phases = r.arr(w.phases, 'workload.phases').map((p, i) => {
    const o = r.obj(p, `workload.phases[${i}]`);
    r.known(o, `workload.phases[${i}]`, ['durationS', 'ratePerS']);
    return {
      durationS: r.num(o.durationS, `workload.phases[${i}].durationS`, 0, 3600, { exclusiveMin: true }),
      ratePerS: r.num(o.ratePerS, `workload.phases[${i}].ratePerS`, 0, 10_000),
    };
  });
  const mix = r.arr(w.mix, 'workload.mix').map((m, i) => {
    const o = r.obj(m, `workload.mix[${i}]`);
    r.known(o, `workload.mix[${i}]`, ['model', 'weight']);
    const model = modelRef(o.model, `workload.mix[${i}].model`);
    if (!backends.some((b) => b.models.includes(model)))
      r.fail(`workload.mix[${i}].model`, o.model, "is on no backend's disk");
    return { model, weight: r.num(o.weight, `workload.mix[${i}].weight`, 0, 1e6, { exclusiveMin: true }) };
  });
  if (w.stream !== undefined && typeof w.stream !== 'boolean')
    r.fail('workload.stream', w.stream, 'must be true or false');
  let sessions = { count: 0, share: 0 };
  if (w.sessions !== undefined) {
    const o = r.obj(w.sessions, 'workload.sessions');
    r.known(o, 'workload.sessions', ['count', 'share']);
    sessions = {
      count: r.num(o.count, 'workload.sessions.count', 0, 1e6, { int: true }),
      share: r.num(o.share, 'workload.sessions.share', 0, 1),
    };
  }
  const workload: Workload = {
    phases,
    mix,
    promptTokens: r.range(w.promptTokens ?? { min: 16, max: 64 }, 'workload.promptTokens'),
    outputTokens: r.range(w.outputTokens, 'workload.outputTokens'),
    stream: w.stream === undefined ? true : (w.stream as boolean),
    sessions,
  };

  const pools: Record<string, string[]> = {};
  const rawPools = root.pools === undefined ? undefined : r.obj(root.pools, 'pools');
  for (const k of Object.keys(rawPools ?? {})) modelRef(k, `pools.${k} (key)`);
  for (const { model } of mix) {
    let names: string[];
    const key = rawPools && Object.keys(rawPools).find((k) => normaliseModel(k) === model);
    if (key !== undefined) {
      names = r.arr(rawPools![key], `pools.${key}`).map((n, j) => {
        const s = r.str(n, `pools.${key}[${j}]`);
        if (!backendNames.has(s))
          r.fail(`pools.${key}[${j}]`, n, `must name a backend (${[...backendNames].join(', ')})`);
        return s;
      });
    } else {
      names = backends.filter((b) => b.loaded.includes(model)).map((b) => b.name);
      if (names.length === 0) names = backends.filter((b) => b.models.includes(model)).map((b) => b.name);
    }
    pools[model] = names;
  }
  const smokeDurationS = r.num(root.smokeDurationS, 'smokeDurationS', 0, 600, { exclusiveMin: true, def: 3 });
  const targets: Scenario['targets'] = { p95VsPools: 1 };
  if (root.targets !== undefined) {
    const o = r.obj(root.targets, 'targets');
    r.known(o, 'targets', ['p95VsPools', 'p95VsNginxLeastConn']);
    targets.p95VsPools = r.num(o.p95VsPools, 'targets.p95VsPools', 0, 100, { exclusiveMin: true, def: 1 });
    if (o.p95VsNginxLeastConn !== undefined)
      targets.p95VsNginxLeastConn = r.num(o.p95VsNginxLeastConn, 'targets.p95VsNginxLeastConn', 0, 100, {
        exclusiveMin: true,
      });
  }
  return { name, description, seed, models, backends, workload, pools, smokeDurationS, targets };
}

export interface PlannedRequest {
  /** Index in arrival order. */
  i: number;
  /** Send time, ms after the run starts. */
  atMs: number;
  model: string;
  promptTokens: number;
  outputTokens: number;
  /** Conversation id sent as X-Session-Id, or null. */
  session: string | null;
  prompt: string;
}

const WORDS = [
  'the',
  'cluster',
  'model',
  'token',
  'answer',
  'server',
  'queue',
  'route',
  'graph',
  'vector',
  'memory',
  'stream',
  'prompt',
  'reason',
  'light',
  'river',
];

/**
 * The seeded request schedule: Poisson arrivals per phase, model mix, prompt/output lengths,
 * sessions. Same scenario + same seed + same duration => identical list.
 * `totalDurationS` rescales the phases (the smoke uses a short one).
 */
export function generateWorkload(sc: Scenario, totalDurationS?: number): PlannedRequest[] {
  const rand = mulberry32(sc.seed);
  const w = sc.workload;
  const natural = w.phases.reduce((s, p) => s + p.durationS, 0);
  const scale = totalDurationS === undefined ? 1 : totalDurationS / natural;
  const totalWeight = w.mix.reduce((s, m) => s + m.weight, 0);
  const intIn = (r: Range): number => r.min + Math.floor(rand() * (r.max - r.min + 1));
  const out: PlannedRequest[] = [];
  let phaseStart = 0;
  for (const phase of w.phases) {
    const phaseEnd = phaseStart + phase.durationS * scale * 1000;
    if (phase.ratePerS > 0) {
      let t = phaseStart;
      for (;;) {
        t += (-Math.log(1 - rand()) / phase.ratePerS) * 1000;
        if (t >= phaseEnd) break;
        let pick = rand() * totalWeight;
        let model = w.mix[w.mix.length - 1].model;
        for (const m of w.mix) {
          pick -= m.weight;
          if (pick < 0) {
            model = m.model;
            break;
          }
        }
        const promptTokens = Math.max(1, intIn(w.promptTokens));
        const outputTokens = intIn(w.outputTokens);
        const inSession = w.sessions.count > 0 && rand() < w.sessions.share;
        const session = inSession ? `s${Math.floor(rand() * w.sessions.count)}` : null;
        const i = out.length;
        // ~4 characters per token, as the simulator counts them; unique per request.
        let prompt = `r${i} `;
        while (prompt.length < promptTokens * 4) prompt += WORDS[Math.floor(rand() * WORDS.length)] + ' ';
        out.push({
          i,
          atMs: Math.round(t * 1000) / 1000,
          model,
          promptTokens,
          outputTokens,
          session,
          prompt: prompt.slice(0, promptTokens * 4),
        });
      }
    }
    phaseStart = phaseEnd;
  }
  return out;
}

/** The simulator config (libs/ollama-sim SimConfig) for one scenario backend. */
export function simConfigFor(sc: Scenario, b: ScenarioBackend): Record<string, unknown> {
  return {
    name: b.name,
    models: b.models.map((n) => {
      const m = sc.models.find((x) => x.name === n)!;
      return {
        name: m.name,
        sizeBytes: Math.round(m.sizeGB * 1e9),
        ...(m.loadMs !== undefined ? { loadTimeMs: m.loadMs } : {}),
      };
    }),
    loaded: b.loaded,
    tokensPerSecond: b.tokensPerSecond,
    promptTokensPerSecond: b.promptTokensPerSecond,
    numParallel: b.numParallel,
    vramBytes: Math.round(b.vramGB * 1e9),
    maxLoadedModels: b.maxLoadedModels,
    loadMsPerGB: b.loadMsPerGB,
    keepAliveMs: -1,
    maxQueue: 100_000,
    defaultOutputTokens: 32,
    maxOutputTokens: 100_000,
    seed: sc.seed,
  };
}
