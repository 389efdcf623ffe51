// Relative, not '@app/ollama-names': the CLI also runs under plain ts-node, without path mapping.
import { keepAliveMs, normaliseModelName } from '../../ollama-names/src';
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
  /**
   * What /api/show and /api/tags report and what requests are checked against: `completion`,
   * `tools`, `thinking`, `embedding`, `vision`, `insert`. Default: `["embedding"]` for embedding
   * models; otherwise `completion` and `tools`, plus `thinking` for thinking families (see
   * `defaultCapabilities`).
   */
  capabilities?: string[];
  /**
   * Whether a trailing assistant message in a chat is continued in place (the chat template leaves
   * it open). Default true. With false the message is rendered as a finished turn and the model
   * answers afresh, as Ollama does for templates that always close the assistant turn.
   */
  prefill?: boolean;
  /** The model's trained context (`<family>.context_length` in /api/show); caps `num_ctx`. Default 131072 (embedding: 2048). */
  contextLength?: number;
}

/** Which of the newer routes an instance serves; off = Gin's plain `404 page not found`, as an older Ollama answers. */
export interface SimRoutes {
  /** `POST /v1/messages` (Anthropic; Ollama 0.14.0). */
  messages?: boolean;
  /** `POST /v1/responses` (OpenAI Responses; Ollama 0.13.3). */
  responses?: boolean;
  /** `GET /api/status` (Ollama 0.16.2). */
  status?: boolean;
}

/** Ollama version that introduced each route: when `routes` leaves one unset, `version` decides. */
export const ROUTE_SINCE: Readonly<Record<keyof SimRoutes, string>> = Object.freeze({
  messages: '0.14.0',
  responses: '0.13.3',
  status: '0.16.2',
});

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
  /** Seed of the fault dice and of the generated text (a request's `options.seed` / `seed` overrides it for its text). */
  seed?: number;
  /** Thinking tokens before the answer for `think: true`/"medium" (low: half, high: double, max: triple). */
  thinkingTokens?: number;
  /** Route switches (unset: on when `version` is at least the route's first version, see `ROUTE_SINCE`). */
  routes?: SimRoutes;
  /** Log one line per request to stderr. */
  logRequests?: boolean;
  faults?: SimFaults;
  nvml?: SimNvmlConfig;
}

export type ResolvedSimConfig = Required<Omit<SimConfig, 'nvml' | 'vramBytes' | 'routes'>> & {
  routes: SimRoutes;
  vramBytes: number;
  nvml?: SimNvmlConfig;
};

export const DEFAULT_SIM_CONFIG: Readonly<ResolvedSimConfig> = Object.freeze({
  name: 'ollama-sim',
  version: '0.20.0',
  models: [
    {
      name: 'llama3.2:latest',
      sizeBytes: 2_019_393_189,
      family: 'llama',
      parameterSize: '3.2B',
      quantization: 'Q4_K_M',
    },
    {
      name: 'nomic-embed-text:latest',
      sizeBytes: 274_302_450,
      family: 'nomic-bert',
      parameterSize: '137M',
      quantization: 'F16',
      embedding: true,
    },
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
  thinkingTokens: 16,
  routes: {},
  logRequests: false,
  faults: {},
});

/** `llama3.2` -> `llama3.2:latest`; case-insensitive like Ollama's name matching. */
/** The key Ollama matches model names by (lower-cased, default tag): see libs/ollama-names. */
export function normalizeModelName(name: string): string {
  return normaliseModelName(name);
}

/** Fills defaults; `base` is the current config when merging an update. */
export function resolveConfig(
  partial: SimConfig,
  base: ResolvedSimConfig = DEFAULT_SIM_CONFIG as ResolvedSimConfig,
): ResolvedSimConfig {
  const out: ResolvedSimConfig = { ...base, faults: { ...base.faults }, routes: { ...base.routes } };
  for (const [k, v] of Object.entries(partial)) {
    if (v === undefined || k === 'faults' || k === 'routes') continue;
    (out as any)[k] = v;
  }
  if (partial.faults) {
    for (const [k, v] of Object.entries(partial.faults)) {
      if (v === undefined || v === null || v === false) delete (out.faults as any)[k];
      else (out.faults as any)[k] = v;
    }
  }
  if (partial.routes !== undefined) {
    if (partial.routes === null || typeof partial.routes !== 'object' || Array.isArray(partial.routes))
      throw new Error(`ollama-sim: routes must be an object, got ${JSON.stringify(partial.routes)}`);
    for (const [k, v] of Object.entries(partial.routes)) {
      if (!(k in ROUTE_SINCE))
        throw new Error(
          `ollama-sim: routes.${k} is not a route switch (known: ${Object.keys(ROUTE_SINCE).join(', ')})`,
        );
      if (v === undefined || v === null) delete (out.routes as any)[k];
      else if (typeof v !== 'boolean')
        throw new Error(`ollama-sim: routes.${k} must be true or false, got ${JSON.stringify(v)}`);
      else (out.routes as any)[k] = v;
    }
  }
  if (partial.models) for (const m of partial.models) checkModel(m);
  if (typeof out.version !== 'string' || !/^\d+\.\d+\.\d+/.test(out.version))
    throw new Error(`ollama-sim: version must look like 0.14.0, got ${JSON.stringify(out.version)}`);
  if (!(Number.isInteger(out.thinkingTokens) && out.thinkingTokens >= 0))
    throw new Error(`ollama-sim: thinkingTokens must be a whole number >= 0, got ${String(out.thinkingTokens)}`);
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

const KNOWN_CAPABILITIES = new Set(['completion', 'tools', 'thinking', 'embedding', 'vision', 'insert', 'audio']);

function checkModel(m: SimModel): void {
  if (m.capabilities !== undefined) {
    if (!Array.isArray(m.capabilities))
      throw new Error(
        `ollama-sim: models[${m.name}].capabilities must be an array, got ${JSON.stringify(m.capabilities)}`,
      );
    for (const c of m.capabilities)
      if (!KNOWN_CAPABILITIES.has(c))
        throw new Error(
          `ollama-sim: models[${m.name}].capabilities has unknown "${String(c)}" (known: ${[...KNOWN_CAPABILITIES].join(', ')})`,
        );
  }
  if (m.contextLength !== undefined && !(Number.isInteger(m.contextLength) && m.contextLength > 0))
    throw new Error(
      `ollama-sim: models[${m.name}].contextLength must be a positive whole number, got ${String(m.contextLength)}`,
    );
}

/** Families whose Ollama builds report `thinking` (qwen3, deepseek-r1, gpt-oss, magistral, ...). */
const THINKING_FAMILY =
  /^(qwen3(?!-coder)|deepseek-r1|deepseek-v3\.1|gpt-oss|magistral|phi4-reasoning|cogito|granite3\.2|olmo-3|smollm3|kimi-k2-thinking)/;

/** A model's capabilities: its own list, else `embedding` for embedding models, else completion + tools (+ thinking for thinking families). */
export function defaultCapabilities(m: SimModel): string[] {
  if (m.capabilities) return [...m.capabilities];
  if (m.embedding) return ['embedding'];
  const base = normalizeModelName(m.name).replace(/^.*\//, '');
  return THINKING_FAMILY.test(base) ? ['completion', 'tools', 'thinking'] : ['completion', 'tools'];
}

/** Whether `route` is served: the explicit switch, else the version rule. */
export function routeEnabled(cfg: ResolvedSimConfig, route: keyof SimRoutes): boolean {
  const v = cfg.routes[route];
  if (v !== undefined) return v;
  return compareVersions(cfg.version, ROUTE_SINCE[route]) >= 0;
}

/** -1, 0, 1 comparing dotted numeric versions ("0.13.3" < "0.14.0"); a pre-release suffix is ignored. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[-+]/)[0].split('.').map(Number);
  const pb = b.split(/[-+]/)[0].split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] || 0;
    const y = pb[i] || 0;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function positive(v: number, key: string): number {
  if (typeof v !== 'number' || !(v > 0))
    throw new Error(`ollama-sim: ${key} must be a positive number, got ${String(v)}`);
  return v;
}

/**
 * Ollama's keep_alive (libs/ollama-names): a number is seconds, a string is a Go duration ("5m",
 * "1h30m", "10s"); negative = forever (returned as -1), 0 = unload at once. Returns undefined when
 * the value is absent or one Ollama refuses (then the server default applies).
 */
export function parseKeepAlive(v: unknown): number | undefined {
  return keepAliveMs(v);
}
