import { hostname } from 'os';
import { registerAs } from '@nestjs/config';

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
    invalid(name, env[name]!, max < Number.MAX_SAFE_INTEGER ? `must be an integer from 1 to ${max}` : 'must be a positive integer');
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

export function parseAgentConfig(env: Env): AgentConfig {
  const token = env.AGENT_TOKEN;
  if (token !== undefined && token !== '' && (/\s/.test(token) || token.length < 8)) {
    invalid('AGENT_TOKEN', '<redacted>', 'must be at least 8 characters with no whitespace');
  }
  const label = raw(env, 'HOSTNAME_LABEL');
  if (label !== undefined && !/^[\w.:-]+$/.test(label)) invalid('HOSTNAME_LABEL', env.HOSTNAME_LABEL!, 'must be a host name');
  return {
    port: (() => {
      const v = raw(env, 'PORT');
      if (v === undefined) return 9400;
      if (!/^\d+$/.test(v) || Number(v) > 65535) invalid('PORT', env.PORT!, 'must be an integer from 0 to 65535');
      return Number(v);
    })(),
    ollamaUrl: parseOllamaHost(env.OLLAMA_HOST),
    nvmlPollIntervalMs: positiveInt(env, 'NVML_POLL_INTERVAL_MS', 2000),
    ollamaPollIntervalMs: positiveInt(env, 'OLLAMA_POLL_INTERVAL_MS', 5000),
    ollamaTimeoutMs: positiveInt(env, 'OLLAMA_TIMEOUT_MS', 2000),
    agentToken: token ? token : null,
    nvmlLibraryPath: raw(env, 'NVML_LIBRARY_PATH'),
    hostnameLabel: label ?? hostname(),
  };
}

/** Registered with ConfigModule: evaluated once when the app is built; a bad value aborts start-up. */
export const agentConfig = registerAs('agent', (): AgentConfig => parseAgentConfig(process.env));
