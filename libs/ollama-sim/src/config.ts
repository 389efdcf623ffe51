/** One model on the simulated server's disk (what /api/tags lists). */
export interface SimModel {
  /** `name:tag`; a bare name gets `:latest`. */
  name: string;
  sizeBytes: number;
  family?: string;
  /** e.g. "3.2B" */
  parameterSize?: string;
  /** e.g. "Q4_K_M" */
  quantization?: string;
  /** Embedding-only model: refuses generate/chat, one slot (as Ollama forces NUM_PARALLEL=1). */
  embedding?: boolean;
  /** Overrides `loadMsPerGB` for this model. */
  loadTimeMs?: number;
  /** Length of the vectors /api/embed returns for this model (default `embeddingDims`). */
  embeddingDims?: number;
}

export interface SimFaults {
  /**
   * New TCP connections fail with ECONNREFUSED: the listener is closed and re-opened on the same
   * port when the fault is cleared. Idle keep-alive connections are closed at once and a request
   * arriving on an already open connection gets its socket destroyed (ECONNRESET); responses
   * already in flight finish.
   */
  refuseConnections?: boolean;
  /** Accept, read the request, never answer (until the client goes away or the server closes). */
  hang?: boolean;
  /** Destroy the socket after this many chunks of a streamed answer (a stream:false answer is never sent). */
  stopMidStreamAfterChunks?: number;
  /** Answer 500 on model routes: `true` always, a number = probability 0..1 (seeded by `seed`). */
  error500?: boolean | number;
  /** Always answer 503 "server busy" on model routes. */
  busy503?: boolean;
  /** Wait this long before answering any Ollama route (headers included). */
  delayHeadersMs?: number;
}

export interface SimGpu {
  name: string;
  uuid: string;
  memTotalBytes: number;
  powerLimitW?: number;
}

export interface SimNvmlConfig {
  /** Fake-NVML state file (see libs/nvml/src/testing/fake-state.ts) the server keeps up to date. */
  statePath: string;
  gpus: SimGpu[];
  /** Minimum spacing between two writes (default 150 ms). */
  throttleMs?: number;
}

export interface SimConfig {
  /** For logs and stats. */
  name?: string;
  /** Version /api/version reports. */
  version?: string;
  /** Models on disk. */
  models?: SimModel[];
  /** Names loaded (instantly) at start. */
  loaded?: string[];
  /** Models /api/pull knows (size and details); any other name pulls with a size guessed from its tag. */
  registry?: SimModel[];
  /** Names /api/pull refuses ("pull model manifest: file does not exist"); names containing "nonexistent" always fail. */
  unpullable?: string[];
  /** Output speed: one token every 1000/tokensPerSecond ms. */
  tokensPerSecond?: number;
  /** Prompt evaluation speed (delay before the first token = promptTokens / this). */
  promptTokensPerSecond?: number;
  /** Output length when the request has no `options.num_predict`. */
  defaultOutputTokens?: number;
  /** Upper bound on `num_predict` / `max_tokens`. */
  maxOutputTokens?: number;
  /** Slots per loaded model (OLLAMA_NUM_PARALLEL); embedding models always get 1. */
  numParallel?: number;
  /** Memory for loaded models; defaults to the sum of `nvml.gpus` memory, else 24 GiB. */
  vramBytes?: number;
  /** OLLAMA_MAX_LOADED_MODELS. */
  maxLoadedModels?: number;
  /** Load time per GB of model size (ms). */
  loadMsPerGB?: number;
  /** OLLAMA_KEEP_ALIVE in ms (negative = forever, 0 = unload after each request). */
  keepAliveMs?: number;
  /** OLLAMA_MAX_QUEUE: more requests than this waiting => 503 busy. */
  maxQueue?: number;
  /** Length of embedding vectors (default 768). */
  embeddingDims?: number;
  /** Duration of a simulated pull/push/create (ms). */
  pullMs?: number;
  /** Seed of the fault dice. */
  seed?: number;
  /** Log one line per request to stderr. */
  logRequests?: boolean;
  faults?: SimFaults;
  nvml?: SimNvmlConfig;
}

export type ResolvedSimConfig = Required<Omit<SimConfig, 'nvml' | 'vramBytes'>> & {
  vramBytes: number;
  nvml?: SimNvmlConfig;
};

export const DEFAULT_SIM_CONFIG: Readonly<ResolvedSimConfig> = Object.freeze({
  name: 'ollama-sim',
  version: '0.12.3',
  models: [
    { name: 'llama3.2:latest', sizeBytes: 2_019_393_189, family: 'llama', parameterSize: '3.2B', quantization: 'Q4_K_M' },
    { name: 'nomic-embed-text:latest', sizeBytes: 274_302_450, family: 'nomic-bert', parameterSize: '137M', quantization: 'F16', embedding: true },
  ],
  loaded: [],
  registry: [],
  unpullable: [],
  tokensPerSecond: 50,
  promptTokensPerSecond: 2000,
  defaultOutputTokens: 32,
  maxOutputTokens: 4096,
  numParallel: 1,
  vramBytes: 24 * 1024 ** 3,
  maxLoadedModels: 3,
  loadMsPerGB: 500,
  keepAliveMs: 5 * 60_000,
  maxQueue: 512,
  embeddingDims: 768,
  pullMs: 300,
  seed: 42,
  logRequests: false,
  faults: {},
});

/** `llama3.2` -> `llama3.2:latest`; case-insensitive like Ollama's name matching. */
export function normalizeModelName(name: string): string {
  const n = name.trim().toLowerCase();
  if (!n) return n;
  const slash = n.lastIndexOf('/');
  return n.indexOf(':', slash + 1) === -1 ? `${n}:latest` : n;
}

/** Fills defaults; `base` is the current config when merging an update. */
export function resolveConfig(partial: SimConfig, base: ResolvedSimConfig = DEFAULT_SIM_CONFIG as ResolvedSimConfig): ResolvedSimConfig {
  const out: ResolvedSimConfig = { ...base, faults: { ...base.faults } };
  for (const [k, v] of Object.entries(partial)) {
    if (v === undefined || k === 'faults') continue;
    (out as any)[k] = v;
  }
  if (partial.faults) {
    for (const [k, v] of Object.entries(partial.faults)) {
      if (v === undefined || v === null || v === false) delete (out.faults as any)[k];
      else (out.faults as any)[k] = v;
    }
  }
  if (partial.vramBytes === undefined && partial.nvml && base === DEFAULT_SIM_CONFIG) {
    out.vramBytes = partial.nvml.gpus.reduce((s, g) => s + g.memTotalBytes, 0) || out.vramBytes;
  }
  out.tokensPerSecond = positive(out.tokensPerSecond, 'tokensPerSecond');
  out.promptTokensPerSecond = positive(out.promptTokensPerSecond, 'promptTokensPerSecond');
  out.numParallel = Math.max(1, Math.floor(out.numParallel));
  out.maxLoadedModels = Math.max(1, Math.floor(out.maxLoadedModels));
  out.maxQueue = Math.max(0, Math.floor(out.maxQueue));
  return out;
}

function positive(v: number, key: string): number {
  if (typeof v !== 'number' || !(v > 0)) throw new Error(`ollama-sim: ${key} must be a positive number, got ${String(v)}`);
  return v;
}

/**
 * Ollama's keep_alive: a number is seconds, a string is a Go duration ("5m", "1h30m", "10s") or a
 * bare number of seconds; negative = forever (returned as -1), 0 = unload at once.
 * Returns undefined when the value is absent or unparsable (then the server default applies).
 */
export function parseKeepAlive(v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'number' && Number.isFinite(v)) return v < 0 ? -1 : Math.round(v * 1000);
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  if (/^-?\d+(\.\d+)?$/.test(s)) return parseKeepAlive(Number(s));
  const re = /(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let matched = '';
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * unit[m[2]];
    matched += m[0];
  }
  if (!matched) return undefined;
  if (s.startsWith('-')) return -1;
  return Math.round(total);
}
