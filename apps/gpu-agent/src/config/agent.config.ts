import { hostname, networkInterfaces } from 'os';
import { registerAs } from '@nestjs/config';
import { BACKEND_NAME_PATTERN, httpBaseUrlProblem } from '@app/common';

/** Registration with one or more balancers (BALANCER_URL); null when BALANCER_URL is unset. */
export interface RegistrationConfig {
  /** Base URLs, without a trailing slash; the agent registers with each of them. */
  balancerUrls: string[];
  token: string;
  /** The backend name announced (AGENT_NAME, default HOSTNAME_LABEL). */
  name: string;
  /** Where the balancer reaches this Ollama (OLLAMA_ADVERTISE_URL, or derived). */
  ollamaUrl: string;
  /** Where the balancer reaches this agent (AGENT_ADVERTISE_URL, or derived). */
  agentUrl: string;
  /** OLLAMA_NUM_PARALLEL / OLLAMA_MAX_LOADED_MODELS, when set in the agent's environment too. */
  parallel?: number;
  maxLoadedModels?: number;
  /** Longest wait between attempts while a balancer is unreachable or refuses. */
  retryMaxMs: number;
  /** Timeout of one registration request. */
  timeoutMs: number;
}

/** The gpu-agent's settings, validated once at start (see docs/configuration.md, "## gpu-agent"). */
export interface AgentConfig {
  port: number;
  /** Base URL of the local Ollama, derived from OLLAMA_HOST the way Ollama reads it. */
  ollamaUrl: string;
  nvmlPollIntervalMs: number;
  ollamaPollIntervalMs: number;
  ollamaTimeoutMs: number;
  /** When set, /status and /metrics need `Authorization: Bearer <token>`. */
  agentToken: string | null;
  /** Undefined: the dynamic loader finds libnvidia-ml.so.1. */
  nvmlLibraryPath: string | undefined;
  hostnameLabel: string;
  registration: RegistrationConfig | null;
}

type Env = Record<string, string | undefined>;

class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function invalid(name: string, value: string, rule: string): never {
  throw new ConfigError(`Invalid configuration: ${name}=${JSON.stringify(value)} ${rule}`);
}

function raw(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function positiveInt(env: Env, name: string, dflt: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = raw(env, name);
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) {
    invalid(
      name,
      env[name]!,
      max < Number.MAX_SAFE_INTEGER ? `must be an integer from 1 to ${max}` : 'must be a positive integer',
    );
  }
  return Number(v);
}

/**
 * OLLAMA_HOST as Ollama's envconfig.Host() reads it: `host:port`, `:port`, `host`, or a URL with
 * http/https (default port 11434 without a scheme, 80/443 with one). A wildcard or empty host
 * means this machine: the agent runs beside its Ollama, so it connects to 127.0.0.1.
 */
export function parseOllamaHost(value: string | undefined): string {
  const name = 'OLLAMA_HOST';
  const s = (value ?? '').trim().replace(/^["']+|["']+$/g, '');
  if (s === '') return 'http://127.0.0.1:11434';
  let scheme = 'http';
  let rest = s;
  let defaultPort = '11434';
  const sep = s.indexOf('://');
  if (sep >= 0) {
    scheme = s.slice(0, sep).toLowerCase();
    rest = s.slice(sep + 3);
    if (scheme === 'http') defaultPort = '80';
    else if (scheme === 'https') defaultPort = '443';
    else invalid(name, value!, 'must use http:// or https://');
  }
  const slash = rest.indexOf('/');
  const hostport = slash >= 0 ? rest.slice(0, slash) : rest;
  let host: string;
  let port: string;
  const m = /^(\[[^\]]*\]|[^:]*)(?::([^:]*))?$/.exec(hostport);
  if (m && m[2] !== undefined) {
    host = m[1];
    port = m[2];
  } else if (/^\[?[0-9a-fA-F:]+(%\w+)?\]?$/.test(hostport) && hostport.includes(':')) {
    host = hostport.startsWith('[') ? hostport : `[${hostport}]`; // bare IPv6 address
    port = defaultPort;
  } else {
    host = hostport;
    port = defaultPort;
  }
  if (!/^\d+$/.test(port) || Number(port) > 65535 || Number(port) < 1) invalid(name, value!, 'has an invalid port');
  if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
  if (host === '[::]') host = '[::1]';
  if (/\s/.test(host)) invalid(name, value!, 'has an invalid host');
  return `${scheme}://${host}:${port}`;
}

const LOOPBACK = /^(127\.|localhost$|\[::1\]$|\[::\]$|0\.0\.0\.0$)/i;

/** The first non-internal IPv4 address of this machine (else IPv6): what a pod or container is reached at. */
export function firstExternalAddress(): string | undefined {
  const all = Object.values(networkInterfaces()).flatMap((list) => list ?? []);
  const v4 = all.find((a) => !a.internal && a.family === 'IPv4');
  if (v4) return v4.address;
  const v6 = all.find((a) => !a.internal && a.family === 'IPv6' && !a.address.startsWith('fe80'));
  return v6 ? `[${v6.address}]` : undefined;
}

function advertisedUrl(env: Env, name: string): string | undefined {
  const v = raw(env, name);
  if (v === undefined) return undefined;
  const problem = httpBaseUrlProblem(v);
  if (problem) invalid(name, env[name]!, `${problem} (an http(s) base URL the balancer can reach)`);
  return new URL(v).origin;
}

function parseRegistration(
  env: Env,
  port: number,
  ollamaUrl: string,
  label: string | undefined,
  localAddress: () => string | undefined,
): RegistrationConfig | null {
  const list = raw(env, 'BALANCER_URL');
  if (list === undefined) return null;
  const balancerUrls: string[] = [];
  for (const entry of list
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    let u: URL;
    try {
      u = new URL(entry);
    } catch {
      invalid(
        'BALANCER_URL',
        env.BALANCER_URL!,
        `has an entry that is not a URL: ${JSON.stringify(entry)} (http(s)://host:port, comma-separated)`,
      );
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      invalid('BALANCER_URL', env.BALANCER_URL!, 'entries must use http:// or https://');
    if (u.username || u.password)
      invalid('BALANCER_URL', '<redacted>', 'must not carry credentials (the token is REGISTRATION_TOKEN)');
    if (u.search || u.hash) invalid('BALANCER_URL', env.BALANCER_URL!, 'entries must not have a query or fragment');
    // A path prefix is kept: a balancer behind a reverse proxy may live under one.
    const base = `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
    if (!balancerUrls.includes(base)) balancerUrls.push(base);
  }
  if (balancerUrls.length === 0) invalid('BALANCER_URL', env.BALANCER_URL!, 'has no URL');
  if (balancerUrls.length > 16) invalid('BALANCER_URL', env.BALANCER_URL!, 'may list at most 16 balancers');

  const token = env.REGISTRATION_TOKEN;
  if (token === undefined || token.trim() === '')
    invalid('REGISTRATION_TOKEN', '', "must be set when BALANCER_URL is (the balancer's REGISTRATION_TOKEN)");
  if (/\s/.test(token) || token.length < 16)
    invalid('REGISTRATION_TOKEN', '<redacted>', 'must be at least 16 characters with no whitespace');

  const name = raw(env, 'AGENT_NAME') ?? label ?? hostname();
  if (!BACKEND_NAME_PATTERN.test(name)) {
    invalid(
      raw(env, 'AGENT_NAME') !== undefined ? 'AGENT_NAME' : 'AGENT_NAME (default: the host name)',
      name,
      'must be 1-64 characters of letters, digits, . _ -',
    );
  }

  // Derived addresses: the Ollama URL itself when it names another host (compose, a LAN), else
  // this machine's first external address (a pod's IP, a container's, a host's LAN address).
  let ollama = advertisedUrl(env, 'OLLAMA_ADVERTISE_URL');
  let agent = advertisedUrl(env, 'AGENT_ADVERTISE_URL');
  const ollamaHost = new URL(ollamaUrl);
  if (ollama === undefined && !LOOPBACK.test(ollamaHost.hostname)) ollama = ollamaHost.origin;
  if (ollama === undefined || agent === undefined) {
    const address = localAddress();
    if (ollama === undefined) {
      if (!address)
        invalid(
          'OLLAMA_ADVERTISE_URL',
          '',
          'must be set: OLLAMA_HOST is local and this machine has no external address to derive it from',
        );
      ollama = `${ollamaHost.protocol}//${address}:${ollamaHost.port || (ollamaHost.protocol === 'https:' ? 443 : 80)}`;
    }
    if (agent === undefined) {
      if (port === 0) invalid('AGENT_ADVERTISE_URL', '', 'must be set when PORT=0 (the port is not known in advance)');
      if (!address)
        invalid('AGENT_ADVERTISE_URL', '', 'must be set: this machine has no external address to derive it from');
      agent = `http://${address}:${port}`;
    }
  }

  const optionalCount = (n: string, min: number): number | undefined => {
    const v = raw(env, n);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > 1024)
      invalid(n, env[n]!, `must be an integer from ${min} to 1024`);
    return Number(v);
  };
  return {
    balancerUrls,
    token,
    name,
    ollamaUrl: ollama,
    agentUrl: agent,
    parallel: optionalCount('OLLAMA_NUM_PARALLEL', 1),
    maxLoadedModels: optionalCount('OLLAMA_MAX_LOADED_MODELS', 0),
    retryMaxMs: positiveInt(env, 'REGISTRATION_RETRY_MAX_MS', 30_000, 3_600_000),
    timeoutMs: positiveInt(env, 'REGISTRATION_TIMEOUT_MS', 5000, 600_000),
  };
}

export function parseAgentConfig(env: Env, localAddress: () => string | undefined = firstExternalAddress): AgentConfig {
  const token = env.AGENT_TOKEN;
  if (token !== undefined && token !== '' && (/\s/.test(token) || token.length < 8)) {
    invalid('AGENT_TOKEN', '<redacted>', 'must be at least 8 characters with no whitespace');
  }
  const label = raw(env, 'HOSTNAME_LABEL');
  if (label !== undefined && !/^[\w.:-]+$/.test(label))
    invalid('HOSTNAME_LABEL', env.HOSTNAME_LABEL!, 'must be a host name');
  const port = (() => {
    const v = raw(env, 'PORT');
    if (v === undefined) return 9400;
    if (!/^\d+$/.test(v) || Number(v) > 65535) invalid('PORT', env.PORT!, 'must be an integer from 0 to 65535');
    return Number(v);
  })();
  const ollamaUrl = parseOllamaHost(env.OLLAMA_HOST);
  return {
    port,
    ollamaUrl,
    nvmlPollIntervalMs: positiveInt(env, 'NVML_POLL_INTERVAL_MS', 2000),
    ollamaPollIntervalMs: positiveInt(env, 'OLLAMA_POLL_INTERVAL_MS', 5000),
    ollamaTimeoutMs: positiveInt(env, 'OLLAMA_TIMEOUT_MS', 2000),
    agentToken: token ? token : null,
    nvmlLibraryPath: raw(env, 'NVML_LIBRARY_PATH'),
    hostnameLabel: label ?? hostname(),
    registration: parseRegistration(env, port, ollamaUrl, label, localAddress),
  };
}

/** Registered with ConfigModule: evaluated once when the app is built; a bad value aborts start-up. */
export const agentConfig = registerAs('agent', (): AgentConfig => parseAgentConfig(process.env));
