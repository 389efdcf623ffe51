import { readFileSync } from 'fs';
import { normaliseModelName as ollamaModelKey } from '@app/ollama-names';
import { loadSharedStateConfig, SharedStateConfig, SharedStateConfigError } from './shared-state-config';

/** One Ollama server behind the balancer. */
export interface BackendConfig {
  /** Stable name used in headers, logs, metrics and admin calls. */
  name: string;
  /** Base URL of the Ollama server, e.g. http://gpu1:11434 (path ignored). */
  url: string;
  /** Relative capacity for policies that weigh backends (default 1). */
  weight: number;
  /** Requests Ollama serves at once per loaded model (its OLLAMA_NUM_PARALLEL); 1 while learned. */
  parallel: number;
  /**
   * True when nobody said (no `parallel`, no `modelConcurrency`, no BACKEND_PARALLEL): the slots are
   * learned per model from Ollama's own counters, starting from Ollama's default of 1.
   */
  learnSlots?: boolean;
  /** Cap on requests in flight to this backend across all models (0 = only per-model caps). */
  maxConcurrency: number;
  /** Cap on requests in flight per model on this backend (default = parallel; 0 = no cap). */
  modelConcurrency: number;
  /** Models Ollama keeps loaded at once (its OLLAMA_MAX_LOADED_MODELS; 0 = unknown). */
  maxLoadedModels: number;
  /** URL of the gpu-agent beside this server, if any. */
  agentUrl?: string;
  /** Token the agent expects (falls back to AGENT_TOKEN). Never logged. */
  agentToken?: string;
}

export type PolicyName = 'predictive' | 'least-loaded' | 'round-robin' | 'least-connections' | 'seed-score';
export const POLICY_NAMES: PolicyName[] = [
  'predictive',
  'least-loaded',
  'round-robin',
  'least-connections',
  'seed-score',
];
export type LogLevel = 'error' | 'warn' | 'log' | 'debug' | 'verbose';
const LOG_LEVELS: LogLevel[] = ['error', 'warn', 'log', 'debug', 'verbose'];

export interface ApiKeyConfig {
  /** The secret itself. Never logged. */
  key: string;
  /** Name shown in logs and metrics instead of the key. */
  name: string;
  /** Requests per minute allowed for this key (0 = unlimited). */
  ratePerMinute: number;
  /** Models this key may use (empty = all). Normalised names. */
  models: string[];
  /** Its priority class (one of PRIORITY_CLASSES; default DEFAULT_PRIORITY_CLASS). */
  priorityClass: string;
  /** Its share within its class, relative to the other keys there (default 1). */
  weight: number;
  /** Prompt + output tokens allowed in any 60 s (0 = unlimited). */
  tokensPerMinute: number;
  /** Prompt + output tokens allowed in any 24 h (0 = unlimited). */
  tokensPerDay: number;
}

/** Who goes first when every backend is at its cap (the placement queue's rules). */
export interface PriorityConfig {
  /** Class names, highest first. */
  classes: string[];
  /** The class of a request without a key, and of a key that names none. */
  defaultClass: string;
  /** Classes refused (429) rather than queued once the queue holds `shedAt` requests. */
  sheddable: string[];
  shedAt: number;
  /** A waiting class gets at least one grant in about this many for its model. */
  minShareEvery: number;
}

/** One OLLAMA_BACKENDS_DNS entry: every address the name resolves to is a backend on this port. */
export interface DnsDiscoveryTarget {
  /** The name as given (a Kubernetes headless Service, e.g. ollama.ollama.svc.cluster.local). */
  host: string;
  port: number;
  protocol: 'http:' | 'https:';
}

/** Backends found at run time: by DNS (OLLAMA_BACKENDS_DNS) and by agent registration. */
export interface DiscoveryConfig {
  dns: DnsDiscoveryTarget[];
  /** How often the names are resolved again (DISCOVERY_INTERVAL_MS). */
  intervalMs: number;
  /** The gpu-agent's port at each discovered address (DISCOVERY_AGENT_PORT); null: no agents. */
  agentPort: number | null;
  /** Agent registration (REGISTRATION_TOKEN); null: the endpoint is off. */
  registration: {
    /** Never logged. */
    token: string;
    /** A registration not repeated for this long is dropped, its backend drained. */
    ttlMs: number;
    /** What agents are told to heartbeat at (a third of the TTL: two may be lost). */
    heartbeatMs: number;
    /** Registered backends allowed at once. */
    maxBackends: number;
  } | null;
}

export interface BalancerConfig {
  port: number;
  host: string;
  backends: BackendConfig[];
  /** BACKEND_PARALLEL: the `parallel` of backends that do not say (discovered ones included); null = learned. */
  backendParallel: number | null;
  discovery: DiscoveryConfig;
  policy: PolicyName;
  healthIntervalMs: number;
  healthTimeoutMs: number;
  healthFailureThreshold: number;
  inventoryIntervalMs: number;
  agentIntervalMs: number;
  agentStaleMs: number;
  agentToken?: string;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  idleStreamTimeoutMs: number;
  /** A request body must arrive within this (a blob upload: with no pause this long). */
  bodyTimeoutMs: number;
  maxBodyBytes: number;
  /** Request bodies held at once, all requests together (503 past it). */
  bodyMemoryBytes: number;
  queueMax: number;
  queueTimeoutMs: number;
  retryMaxAttempts: number;
  retryBudgetRatio: number;
  retryBudgetMin: number;
  /** Resume a chat stream broken after its first byte on another backend with the same model (STREAM_RESUME). */
  streamResume: boolean;
  /** At most this many resumes per request. */
  streamResumeMax: number;
  /** Resumes in progress at most this share of requests in flight (at least 2). */
  streamResumeRatio: number;
  /** Models whose chat template continues a trailing assistant message (glob patterns, `*` any). */
  streamResumeModels: readonly string[];
  ejectConsecutiveFailures: number;
  ejectBaseMs: number;
  ejectMaxPercent: number;
  slowStartMs: number;
  affinityMaxExtraMs: number;
  /** Load a model that a load evicted, and that is still in use, where it fits beside what is loaded (predictive policy). */
  rewarmEvicted: boolean;
  /** Load another copy of a model its warm holders cannot keep up with, where it fits beside what is loaded (predictive policy). */
  preloadSaturated: boolean;
  drainTimeoutMs: number;
  adminToken?: string;
  /** Who may pull, delete, copy, create, push and preload models through the balancer. */
  modelManagement: ModelManagement;
  apiKeys: ApiKeyConfig[];
  priority: PriorityConfig;
  forwardAuthorization: boolean;
  /** PEM certificates trusted for https backends and agents, beside the system's (BACKEND_CA_FILE). */
  backendCa?: string;
  /** Origins allowed beyond Ollama's defaults on the balancer's own answers (OLLAMA_ORIGINS). */
  allowedOrigins: string[];
  logLevel: LogLevel;
  logRequests: boolean;
  /** Several replicas sharing state through Redis (REDIS_URL); url null = a single process. */
  sharedState: SharedStateConfig;
}

export class ConfigError extends Error {}

export const MODEL_MANAGEMENT_MODES = ['open', 'admin', 'off'] as const;
export type ModelManagement = (typeof MODEL_MANAGEMENT_MODES)[number];

type Env = Record<string, string | undefined>;

const DEFAULTS = {
  PORT: 11434,
  HOST: '0.0.0.0',
  ROUTING_POLICY: 'predictive',
  HEALTH_INTERVAL_MS: 5000,
  HEALTH_TIMEOUT_MS: 2000,
  HEALTH_FAILURE_THRESHOLD: 3,
  INVENTORY_INTERVAL_MS: 10000,
  AGENT_INTERVAL_MS: 2000,
  AGENT_STALE_MS: 10000,
  CONNECT_TIMEOUT_MS: 5000,
  HEADERS_TIMEOUT_MS: 300000,
  IDLE_STREAM_TIMEOUT_MS: 120000,
  BODY_TIMEOUT_MS: 60000,
  BODY_MEMORY_BYTES: 256 * 1024 * 1024,
  MAX_BODY_BYTES: 64 * 1024 * 1024,
  QUEUE_MAX: 1000,
  QUEUE_TIMEOUT_MS: 60000,
  RETRY_MAX_ATTEMPTS: 3,
  RETRY_BUDGET_RATIO: 0.2,
  RETRY_BUDGET_MIN: 10,
  STREAM_RESUME_MAX: 2,
  STREAM_RESUME_RATIO: 0.1,
  EJECT_CONSECUTIVE_FAILURES: 5,
  EJECT_BASE_MS: 10000,
  EJECT_MAX_PERCENT: 50,
  SLOW_START_MS: 10000,
  AFFINITY_MAX_EXTRA_MS: 2000,
  DRAIN_TIMEOUT_MS: 30000,
  DISCOVERY_INTERVAL_MS: 10000,
  REGISTRATION_TTL_MS: 15000,
  REGISTRATION_MAX_BACKENDS: 64,
  LOG_LEVEL: 'log',
  LOG_REQUESTS: true,
};

function fail(setting: string, value: unknown, why: string): never {
  const shown = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value ?? null);
  throw new ConfigError(`Invalid configuration: ${setting}=${shown} ${why}`);
}

function int(env: Env, key: string, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return def;
  if (!/^-?\d+$/.test(raw.trim())) fail(key, raw, `must be an integer between ${min} and ${max}`);
  const n = Number(raw.trim());
  if (n < min || n > max) fail(key, raw, `must be an integer between ${min} and ${max}`);
  return n;
}

function num(env: Env, key: string, def: number, min: number, max: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw.trim());
  if (!Number.isFinite(n) || n < min || n > max) fail(key, raw, `must be a number between ${min} and ${max}`);
  return n;
}

/** Comma-separated model names with `*` wildcards (normalised as Ollama matches names); default `*`. */
function modelPatterns(env: Env, key: string): readonly string[] {
  const raw = env[key];
  if (raw === undefined || raw.trim() === '') return ['*'];
  const out = raw
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (out.length === 0) return fail(key, raw, 'must name at least one model pattern');
  for (const p of out)
    if (!/^[\w.:/*-]+$/.test(p)) return fail(key, raw, `has an invalid model pattern ${JSON.stringify(p)}`);
  return out.map((p) => (p === '*' ? p : p.includes('*') ? p.toLowerCase() : normaliseModelName(p)));
}

function bool(env: Env, key: string, def: boolean): boolean {
  const raw = env[key];
  if (raw === undefined || raw === '') return def;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  return fail(key, raw, 'must be true or false');
}

/**
 * A backend or agent URL, read as Ollama reads OLLAMA_HOST: a bare `host` is http on Ollama's port
 * 11434, while a URL with a scheme and no port means that scheme's port (80 for http, 443 for
 * https). An explicit port is kept, 80 and 443 included.
 */
function validUrl(setting: string, raw: unknown): string {
  if (typeof raw !== 'string' || raw.trim() === '')
    fail(setting, raw, 'must be an http(s) URL such as http://gpu1:11434');
  let s = raw.trim();
  const schemeGiven = /^[a-z]+:\/\//i.test(s);
  if (!schemeGiven) s = `http://${s}`;
  const explicitPort = /^[a-z]+:\/\/(?:\[[^\]]*\]|[^/?#@:]*)?:\d+(?:[/?#]|$)/i.test(
    s.replace(/^([a-z]+:\/\/)[^/?#]*@/i, '$1'),
  );
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return fail(setting, raw, 'must be an http(s) URL such as http://gpu1:11434');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') fail(setting, raw, 'must use http or https');
  if (u.username || u.password) fail(setting, '<redacted>', 'must not embed credentials in the URL');
  if (!explicitPort && !schemeGiven) u.port = '11434';
  return `${u.protocol}//${u.host}`;
}

function positiveIntField(setting: string, raw: unknown, def: number, min = 0): number {
  if (raw === undefined || raw === null) return def;
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < min)
    fail(setting, raw, `must be an integer >= ${min}`);
  return raw;
}

/** The key Ollama matches a model name by (case-insensitive, default tag/host/namespace): see @app/ollama-names. */
export function normaliseModelName(name: string): string {
  return ollamaModelKey(name);
}

function parseBackends(
  env: Env,
  file: Record<string, unknown> | undefined,
  parallelDefault: number | null,
): BackendConfig[] {
  const out: BackendConfig[] = [];
  const fromFile = file?.backends;
  if (fromFile !== undefined) {
    if (!Array.isArray(fromFile)) fail('BALANCER_CONFIG backends', fromFile, 'must be an array');
    fromFile.forEach((b: any, i: number) => {
      const where = `BALANCER_CONFIG backends[${i}]`;
      if (typeof b !== 'object' || b === null) fail(where, b, 'must be an object with a url');
      const url = validUrl(`${where}.url`, b.url);
      const parallel = positiveIntField(`${where}.parallel`, b.parallel, parallelDefault ?? 1, 1);
      // A modelConcurrency alone caps what is learned; it does not say how many slots Ollama has.
      const learnSlots = parallelDefault === null && b.parallel === undefined;
      if (b.weight !== undefined && (typeof b.weight !== 'number' || !(b.weight > 0)))
        fail(`${where}.weight`, b.weight, 'must be a number > 0');
      if (b.name !== undefined && (typeof b.name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(b.name)))
        fail(`${where}.name`, b.name, 'must be 1-64 characters of letters, digits, . _ -');
      out.push({
        name: b.name ?? new URL(url).host,
        url,
        weight: b.weight ?? 1,
        parallel,
        learnSlots,
        maxConcurrency: positiveIntField(`${where}.maxConcurrency`, b.maxConcurrency, 0),
        modelConcurrency: positiveIntField(`${where}.modelConcurrency`, b.modelConcurrency, learnSlots ? 0 : parallel),
        maxLoadedModels: positiveIntField(`${where}.maxLoadedModels`, b.maxLoadedModels, 0),
        agentUrl: b.agentUrl === undefined ? undefined : validUrl(`${where}.agentUrl`, b.agentUrl),
        agentToken: b.agentToken === undefined ? undefined : String(b.agentToken),
      });
    });
  }
  const list = env.OLLAMA_BACKENDS;
  if (list !== undefined && list.trim() !== '') {
    const agents = (env.OLLAMA_AGENTS ?? '').split(',').map((s) => s.trim());
    list.split(',').forEach((raw, i) => {
      const url = validUrl('OLLAMA_BACKENDS', raw);
      const agent = agents[i];
      out.push({
        name: new URL(url).host,
        url,
        weight: 1,
        parallel: parallelDefault ?? 1,
        learnSlots: parallelDefault === null,
        maxConcurrency: 0,
        modelConcurrency: parallelDefault ?? 0,
        maxLoadedModels: 0,
        agentUrl: agent ? validUrl('OLLAMA_AGENTS', agent) : undefined,
      });
    });
  }
  const seen = new Set<string>();
  for (const b of out) {
    if (seen.has(b.name)) fail('backend name', b.name, 'is used twice: give each backend a distinct name');
    seen.add(b.name);
  }
  return out;
}

function parseDiscovery(env: Env): DiscoveryConfig {
  const dns: DnsDiscoveryTarget[] = [];
  const list = env.OLLAMA_BACKENDS_DNS;
  if (list !== undefined && list.trim() !== '') {
    for (const raw of list
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean)) {
      let u: URL;
      try {
        u = new URL(/^[a-z]+:\/\//i.test(raw) ? raw : `http://${raw}`);
      } catch {
        return fail('OLLAMA_BACKENDS_DNS', list, `has an entry that is not name:port: ${JSON.stringify(raw)}`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:')
        fail('OLLAMA_BACKENDS_DNS', list, 'entries must be name:port or http(s)://name:port');
      if (u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash)
        fail('OLLAMA_BACKENDS_DNS', list, 'entries must be name:port, nothing more');
      if (/^\[|^\d+\.\d+\.\d+\.\d+$/.test(u.hostname))
        fail('OLLAMA_BACKENDS_DNS', list, `${u.hostname} is an address, not a name: list addresses in OLLAMA_BACKENDS`);
      const port = Number(u.port || (u.protocol === 'https:' ? 443 : 11434));
      dns.push({ host: u.hostname, port, protocol: u.protocol });
    }
  }
  const agentPortRaw = env.DISCOVERY_AGENT_PORT?.trim();
  const agentPort = agentPortRaw ? int(env, 'DISCOVERY_AGENT_PORT', 0, 1, 65535) : null;
  let registration: DiscoveryConfig['registration'] = null;
  const token = env.REGISTRATION_TOKEN?.trim();
  if (token) {
    if (token.length < 16 || /\s/.test(token))
      fail('REGISTRATION_TOKEN', '<redacted>', 'must be at least 16 characters with no whitespace');
    const ttlMs = int(env, 'REGISTRATION_TTL_MS', DEFAULTS.REGISTRATION_TTL_MS, 150, 3_600_000);
    registration = {
      token,
      ttlMs,
      heartbeatMs: Math.max(50, Math.floor(ttlMs / 3)),
      maxBackends: int(env, 'REGISTRATION_MAX_BACKENDS', DEFAULTS.REGISTRATION_MAX_BACKENDS, 1, 10_000),
    };
  }
  return {
    dns,
    intervalMs: int(env, 'DISCOVERY_INTERVAL_MS', DEFAULTS.DISCOVERY_INTERVAL_MS, 50, 3_600_000),
    agentPort,
    registration,
  };
}

const CLASS_NAME = /^[A-Za-z0-9_-]{1,32}$/;

function parsePriority(env: Env): PriorityConfig {
  const rawClasses = env.PRIORITY_CLASSES;
  const classes = (
    rawClasses === undefined || rawClasses.trim() === '' ? 'interactive,standard,batch,sheddable' : rawClasses
  )
    .split(',')
    .map((c) => c.trim());
  for (const c of classes)
    if (!CLASS_NAME.test(c))
      fail(
        'PRIORITY_CLASSES',
        rawClasses,
        'must be a comma-separated list of class names (letters, digits, _ -), highest priority first',
      );
  if (new Set(classes).size !== classes.length) fail('PRIORITY_CLASSES', rawClasses, 'must not name a class twice');
  if (classes.length > 16) fail('PRIORITY_CLASSES', rawClasses, 'must name at most 16 classes');
  const defaultClass =
    (env.DEFAULT_PRIORITY_CLASS ?? '').trim() || (classes.includes('standard') ? 'standard' : classes[0]);
  if (!classes.includes(defaultClass))
    fail(
      'DEFAULT_PRIORITY_CLASS',
      env.DEFAULT_PRIORITY_CLASS,
      `must be one of PRIORITY_CLASSES (${classes.join(', ')})`,
    );
  const rawShed = env.SHEDDABLE_CLASSES;
  const sheddable =
    rawShed === undefined
      ? classes.filter((c) => c === 'sheddable')
      : rawShed
          .split(',')
          .map((c) => c.trim())
          .filter((c) => c !== '');
  for (const c of sheddable)
    if (!classes.includes(c))
      fail('SHEDDABLE_CLASSES', rawShed, `must name classes of PRIORITY_CLASSES (${classes.join(', ')})`);
  return {
    classes,
    defaultClass,
    sheddable,
    shedAt: int(env, 'QUEUE_SHED_AT', 0, 0),
    minShareEvery: int(env, 'PRIORITY_MIN_SHARE_EVERY', 10, 2, 1000),
  };
}

interface KeyLimits {
  priorityClass?: string;
  weight?: number;
  tokensPerMinute?: number;
  tokensPerDay?: number;
}

const LIMIT_FIELDS = ['class', 'weight', 'tokensPerMinute', 'tokensPerDay'];

/** One key's class, weight and token quotas, from the file (numbers) or API_KEY_LIMITS (text). */
function keyLimits(setting: string, raw: Record<string, unknown>, priority: PriorityConfig): KeyLimits {
  const out: KeyLimits = {};
  if (raw.class !== undefined) {
    if (typeof raw.class !== 'string' || !priority.classes.includes(raw.class))
      fail(`${setting}.class`, raw.class, `must be one of PRIORITY_CLASSES (${priority.classes.join(', ')})`);
    out.priorityClass = raw.class;
  }
  if (raw.weight !== undefined) {
    const w = typeof raw.weight === 'string' && raw.weight.trim() !== '' ? Number(raw.weight) : raw.weight;
    if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0 || w > 1000)
      fail(`${setting}.weight`, raw.weight, 'must be a number > 0 and <= 1000');
    out.weight = w;
  }
  for (const f of ['tokensPerMinute', 'tokensPerDay'] as const) {
    if (raw[f] === undefined) continue;
    const v = typeof raw[f] === 'string' && /^\d+$/.test((raw[f] as string).trim()) ? Number(raw[f]) : raw[f];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      fail(`${setting}.${f}`, raw[f], 'must be an integer >= 0 (0 = unlimited)');
    out[f] = v;
  }
  return out;
}

/** API_KEY_LIMITS=name:class=batch,weight=2,tokensPerMinute=10000;other:class=interactive */
function parseKeyLimitsEnv(env: Env, priority: PriorityConfig): Map<string, KeyLimits> {
  const out = new Map<string, KeyLimits>();
  const raw = env.API_KEY_LIMITS;
  if (raw === undefined || raw.trim() === '') return out;
  for (const entry of raw.split(';')) {
    if (entry.trim() === '') continue;
    const colon = entry.indexOf(':');
    const name = colon === -1 ? '' : entry.slice(0, colon).trim();
    if (name === '')
      fail(
        'API_KEY_LIMITS',
        entry.trim(),
        'entries must be name:field=value,... separated by ; (fields: class, weight, tokensPerMinute, tokensPerDay)',
      );
    const fields: Record<string, unknown> = {};
    for (const pair of entry.slice(colon + 1).split(',')) {
      if (pair.trim() === '') continue;
      const eq = pair.indexOf('=');
      const k = eq === -1 ? pair.trim() : pair.slice(0, eq).trim();
      if (eq === -1 || !LIMIT_FIELDS.includes(k))
        fail(
          `API_KEY_LIMITS ${name}`,
          pair.trim(),
          `must be field=value with a field among ${LIMIT_FIELDS.join(', ')}`,
        );
      fields[k] = pair.slice(eq + 1).trim();
    }
    if (out.has(name)) fail('API_KEY_LIMITS', name, 'names a key twice');
    out.set(name, keyLimits(`API_KEY_LIMITS ${name}`, fields, priority));
  }
  return out;
}

function parseApiKeys(env: Env, file: Record<string, unknown> | undefined, priority: PriorityConfig): ApiKeyConfig[] {
  const keys: ApiKeyConfig[] = [];
  // API_KEYS=name:key[:ratePerMinute[:model|model]],...
  const raw = env.API_KEYS;
  if (raw !== undefined && raw.trim() !== '') {
    raw.split(',').forEach((entry, i) => {
      const parts = entry.trim().split(':');
      if (parts.length < 2 || !parts[0] || !parts[1])
        fail('API_KEYS', `<entry ${i + 1} redacted>`, 'entries must be name:key[:ratePerMinute[:model|model]]');
      const rate = parts[2] ? Number(parts[2]) : 0;
      if (!Number.isInteger(rate) || rate < 0)
        fail('API_KEYS', `<entry ${i + 1} rate ${parts[2]}>`, 'rate must be a non-negative integer');
      keys.push({
        name: parts[0],
        key: parts[1],
        ratePerMinute: rate,
        models: parts.slice(3).join(':').split('|').filter(Boolean).map(normaliseModelName),
        priorityClass: priority.defaultClass,
        weight: 1,
        tokensPerMinute: 0,
        tokensPerDay: 0,
      });
    });
  }
  const fromFile = file?.apiKeys;
  if (fromFile !== undefined) {
    if (!Array.isArray(fromFile)) fail('BALANCER_CONFIG apiKeys', '<redacted>', 'must be an array');
    fromFile.forEach((k: any, i: number) => {
      if (!k || typeof k.key !== 'string' || k.key.length < 8)
        fail(`BALANCER_CONFIG apiKeys[${i}].key`, '<redacted>', 'must be a string of at least 8 characters');
      const limits = keyLimits(`BALANCER_CONFIG apiKeys[${i}]`, k, priority);
      keys.push({
        name: typeof k.name === 'string' ? k.name : `key${i + 1}`,
        key: k.key,
        ratePerMinute: positiveIntField(`BALANCER_CONFIG apiKeys[${i}].ratePerMinute`, k.ratePerMinute, 0),
        models: Array.isArray(k.models) ? k.models.map((m: unknown) => normaliseModelName(String(m))) : [],
        priorityClass: limits.priorityClass ?? priority.defaultClass,
        weight: limits.weight ?? 1,
        tokensPerMinute: limits.tokensPerMinute ?? 0,
        tokensPerDay: limits.tokensPerDay ?? 0,
      });
    });
  }
  // API_KEY_LIMITS applies to keys by name (the environment wins over the file).
  const limits = parseKeyLimitsEnv(env, priority);
  for (const [name, l] of limits) {
    const named = keys.filter((k) => k.name === name);
    if (named.length === 0) fail('API_KEY_LIMITS', name, 'names no key of API_KEYS or BALANCER_CONFIG apiKeys');
    if (named.length > 1) fail('API_KEY_LIMITS', name, 'names a key name used twice: give each key a distinct name');
    Object.assign(named[0], l);
  }
  return keys;
}

function sharedStateFrom(env: Env): SharedStateConfig {
  try {
    return loadSharedStateConfig(env);
  } catch (e) {
    if (e instanceof SharedStateConfigError) throw new ConfigError(e.message);
    throw e;
  }
}

/** Reads, validates and types every setting once. Throws ConfigError naming the setting and value. */
export function loadBalancerConfig(env: Env = process.env): BalancerConfig {
  let file: Record<string, unknown> | undefined;
  if (env.BALANCER_CONFIG) {
    let text: string;
    try {
      text = readFileSync(env.BALANCER_CONFIG, 'utf8');
    } catch (e) {
      return fail('BALANCER_CONFIG', env.BALANCER_CONFIG, `cannot be read: ${(e as Error).message}`);
    }
    try {
      file = JSON.parse(text);
    } catch (e) {
      return fail('BALANCER_CONFIG', env.BALANCER_CONFIG, `is not valid JSON: ${(e as Error).message}`);
    }
    if (typeof file !== 'object' || file === null || Array.isArray(file))
      fail('BALANCER_CONFIG', env.BALANCER_CONFIG, 'must hold a JSON object');
    // Settings may also be given in the file, as their environment names; the environment wins.
    const settings = (file as any).settings;
    if (settings !== undefined) {
      if (typeof settings !== 'object' || settings === null)
        fail('BALANCER_CONFIG settings', settings, 'must be an object');
      const merged: Env = {};
      for (const [k, v] of Object.entries(settings)) merged[k] = String(v);
      env = { ...merged, ...env };
    }
  }
  // Unset: every backend's slots are learned (from Ollama's default, 1); set: that many, as told.
  const parallelDefault =
    env.BACKEND_PARALLEL === undefined || env.BACKEND_PARALLEL.trim() === ''
      ? null
      : int(env, 'BACKEND_PARALLEL', 1, 1, 1024);
  const priority = parsePriority(env);
  const backends = parseBackends(env, file, parallelDefault);
  const policy = (env.ROUTING_POLICY ?? DEFAULTS.ROUTING_POLICY).trim() as PolicyName;
  if (!POLICY_NAMES.includes(policy))
    fail('ROUTING_POLICY', env.ROUTING_POLICY, `must be one of ${POLICY_NAMES.join(', ')}`);
  const logLevel = (env.LOG_LEVEL ?? DEFAULTS.LOG_LEVEL).trim() as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) fail('LOG_LEVEL', env.LOG_LEVEL, `must be one of ${LOG_LEVELS.join(', ')}`);
  const adminToken = env.ADMIN_TOKEN?.trim() || undefined;
  if (adminToken !== undefined && adminToken.length < 12)
    fail('ADMIN_TOKEN', '<redacted>', 'must be at least 12 characters');
  const modelManagement = (env.MODEL_MANAGEMENT ?? 'open').trim() as ModelManagement;
  if (!MODEL_MANAGEMENT_MODES.includes(modelManagement))
    fail('MODEL_MANAGEMENT', env.MODEL_MANAGEMENT, `must be one of ${MODEL_MANAGEMENT_MODES.join(', ')}`);
  if (modelManagement === 'admin' && adminToken === undefined)
    fail('MODEL_MANAGEMENT', modelManagement, 'needs ADMIN_TOKEN (the token model management then requires)');
  let backendCa: string | undefined;
  if (env.BACKEND_CA_FILE !== undefined && env.BACKEND_CA_FILE.trim() !== '') {
    try {
      backendCa = readFileSync(env.BACKEND_CA_FILE.trim(), 'utf8');
    } catch (e) {
      return fail('BACKEND_CA_FILE', env.BACKEND_CA_FILE, `cannot be read: ${(e as Error).message}`);
    }
    if (!backendCa.includes('-----BEGIN CERTIFICATE-----'))
      fail('BACKEND_CA_FILE', env.BACKEND_CA_FILE, 'must hold PEM certificates (-----BEGIN CERTIFICATE-----)');
  }
  const allowedOrigins = (env.OLLAMA_ORIGINS ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
  for (const o of allowedOrigins)
    if (/[\s"]/.test(o))
      fail('OLLAMA_ORIGINS', env.OLLAMA_ORIGINS, 'must be a comma-separated list of origins (wildcards: *)');
  const cfg: BalancerConfig = {
    port: int(env, 'PORT', DEFAULTS.PORT, 0, 65535),
    host: (env.HOST ?? DEFAULTS.HOST).trim(),
    backends,
    backendParallel: parallelDefault,
    discovery: parseDiscovery(env),
    policy,
    healthIntervalMs: int(env, 'HEALTH_INTERVAL_MS', DEFAULTS.HEALTH_INTERVAL_MS, 50),
    healthTimeoutMs: int(env, 'HEALTH_TIMEOUT_MS', DEFAULTS.HEALTH_TIMEOUT_MS, 10),
    healthFailureThreshold: int(env, 'HEALTH_FAILURE_THRESHOLD', DEFAULTS.HEALTH_FAILURE_THRESHOLD, 1, 1000),
    inventoryIntervalMs: int(env, 'INVENTORY_INTERVAL_MS', DEFAULTS.INVENTORY_INTERVAL_MS, 50),
    agentIntervalMs: int(env, 'AGENT_INTERVAL_MS', DEFAULTS.AGENT_INTERVAL_MS, 50),
    agentStaleMs: int(env, 'AGENT_STALE_MS', DEFAULTS.AGENT_STALE_MS, 100),
    agentToken: env.AGENT_TOKEN?.trim() || undefined,
    connectTimeoutMs: int(env, 'CONNECT_TIMEOUT_MS', DEFAULTS.CONNECT_TIMEOUT_MS, 10),
    headersTimeoutMs: int(env, 'HEADERS_TIMEOUT_MS', DEFAULTS.HEADERS_TIMEOUT_MS, 10),
    idleStreamTimeoutMs: int(env, 'IDLE_STREAM_TIMEOUT_MS', DEFAULTS.IDLE_STREAM_TIMEOUT_MS, 10),
    bodyTimeoutMs: int(env, 'BODY_TIMEOUT_MS', DEFAULTS.BODY_TIMEOUT_MS, 100),
    maxBodyBytes: int(env, 'MAX_BODY_BYTES', DEFAULTS.MAX_BODY_BYTES, 1024),
    bodyMemoryBytes: int(env, 'BODY_MEMORY_BYTES', DEFAULTS.BODY_MEMORY_BYTES, 1024),
    queueMax: int(env, 'QUEUE_MAX', DEFAULTS.QUEUE_MAX, 0),
    queueTimeoutMs: int(env, 'QUEUE_TIMEOUT_MS', DEFAULTS.QUEUE_TIMEOUT_MS, 1),
    retryMaxAttempts: int(env, 'RETRY_MAX_ATTEMPTS', DEFAULTS.RETRY_MAX_ATTEMPTS, 1, 10),
    retryBudgetRatio: num(env, 'RETRY_BUDGET_RATIO', DEFAULTS.RETRY_BUDGET_RATIO, 0, 1),
    retryBudgetMin: int(env, 'RETRY_BUDGET_MIN', DEFAULTS.RETRY_BUDGET_MIN, 0, 100000),
    streamResume: bool(env, 'STREAM_RESUME', true),
    streamResumeMax: int(env, 'STREAM_RESUME_MAX', DEFAULTS.STREAM_RESUME_MAX, 1, 10),
    streamResumeRatio: num(env, 'STREAM_RESUME_RATIO', DEFAULTS.STREAM_RESUME_RATIO, 0, 1),
    streamResumeModels: modelPatterns(env, 'STREAM_RESUME_MODELS'),
    ejectConsecutiveFailures: int(env, 'EJECT_CONSECUTIVE_FAILURES', DEFAULTS.EJECT_CONSECUTIVE_FAILURES, 1),
    ejectBaseMs: int(env, 'EJECT_BASE_MS', DEFAULTS.EJECT_BASE_MS, 1),
    ejectMaxPercent: int(env, 'EJECT_MAX_PERCENT', DEFAULTS.EJECT_MAX_PERCENT, 0, 100),
    slowStartMs: int(env, 'SLOW_START_MS', DEFAULTS.SLOW_START_MS, 0),
    affinityMaxExtraMs: int(env, 'AFFINITY_MAX_EXTRA_MS', DEFAULTS.AFFINITY_MAX_EXTRA_MS, 0),
    rewarmEvicted: bool(env, 'REWARM_EVICTED', true),
    preloadSaturated: bool(env, 'PRELOAD_SATURATED', true),
    drainTimeoutMs: int(env, 'DRAIN_TIMEOUT_MS', DEFAULTS.DRAIN_TIMEOUT_MS, 0),
    adminToken,
    modelManagement,
    apiKeys: parseApiKeys(env, file, priority),
    priority,
    forwardAuthorization: bool(env, 'FORWARD_AUTHORIZATION', false),
    backendCa,
    allowedOrigins,
    logLevel,
    logRequests: bool(env, 'LOG_REQUESTS', DEFAULTS.LOG_REQUESTS),
    sharedState: sharedStateFrom(env),
  };
  // No backend is allowed (every request then answers 503 and readiness stays down), so an
  // orchestrator can start the balancer before its servers; main.ts warns loudly.
  return cfg;
}

export const BALANCER_CONFIG = Symbol('BALANCER_CONFIG');
