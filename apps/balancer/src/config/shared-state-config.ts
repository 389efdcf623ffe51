/**
 * Settings of the shared state (several balancer replicas over one Redis). Off, and the balancer
 * exactly a single process as before, while REDIS_URL is unset.
 */
export interface SharedStateConfig {
  /** redis:// or rediss:// URL; null = single-process mode (everything in memory). */
  url: string | null;
  /** Prefix of every key and channel, so several fleets can share one Redis. */
  prefix: string;
  /** How long a granted slot (and a replica's liveness) lasts without renewal. */
  leaseMs: number;
  /** How often each replica renews all its slots and its liveness, in one round trip. */
  heartbeatMs: number;
  /** Longest any request waits on Redis before the balancer falls back to local state. */
  commandTimeoutMs: number;
  /** How often a replica's queued requests re-check for capacity no release announced. */
  queueRetryMs: number;
  /** Lifetime of a session pin (the conversation's backend) after its last use. */
  pinTtlMs: number;
  /** Stable name of this replica in Redis (default: host name, process id and a random suffix). */
  replicaId: string | null;
}

export const SHARED_STATE_DEFAULTS = {
  REDIS_PREFIX: 'olb:',
  REDIS_LEASE_MS: 15_000,
  REDIS_HEARTBEAT_MS: 5_000,
  REDIS_COMMAND_TIMEOUT_MS: 100,
  REDIS_QUEUE_RETRY_MS: 500,
  SESSION_PIN_TTL_MS: 30 * 60_000,
};

export class SharedStateConfigError extends Error {}

type Env = Record<string, string | undefined>;

function fail(setting: string, value: unknown, why: string): never {
  throw new SharedStateConfigError(`Invalid configuration: ${setting}=${JSON.stringify(value ?? null)} ${why}`);
}

function int(env: Env, key: string, def: number, min: number, max: number): number {
  const raw = env[key];
  if (raw === undefined || raw.trim() === '') return def;
  if (!/^\d+$/.test(raw.trim())) fail(key, raw, `must be an integer between ${min} and ${max}`);
  const n = Number(raw.trim());
  if (n < min || n > max) fail(key, raw, `must be an integer between ${min} and ${max}`);
  return n;
}

/** The URL with its password hidden, for logs and error messages. */
export function redactRedisUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable>';
  }
}

/** Reads and validates the REDIS_* settings; throws naming the setting and value. */
export function loadSharedStateConfig(env: Env = process.env): SharedStateConfig {
  let url: string | null = null;
  const raw = env.REDIS_URL?.trim();
  if (raw) {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      return fail(
        'REDIS_URL',
        redactRedisUrl(raw),
        'must be a URL such as redis://redis:6379/0 or rediss://user:password@host:6380',
      );
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
      fail('REDIS_URL', redactRedisUrl(raw), 'must use redis:// or rediss://');
    if (!u.hostname) fail('REDIS_URL', redactRedisUrl(raw), 'must name a host');
    const db = u.pathname.replace(/^\//, '');
    if (db !== '' && !/^\d{1,2}$/.test(db))
      fail('REDIS_URL', redactRedisUrl(raw), 'path must be a database number (e.g. /0)');
    url = raw;
  }
  const prefix = env.REDIS_PREFIX ?? SHARED_STATE_DEFAULTS.REDIS_PREFIX;
  if (!/^[A-Za-z0-9:._-]{1,64}$/.test(prefix))
    fail('REDIS_PREFIX', prefix, 'must be 1-64 characters of letters, digits, : . _ -');
  const leaseMs = int(env, 'REDIS_LEASE_MS', SHARED_STATE_DEFAULTS.REDIS_LEASE_MS, 200, 600_000);
  const heartbeatMs = int(env, 'REDIS_HEARTBEAT_MS', SHARED_STATE_DEFAULTS.REDIS_HEARTBEAT_MS, 50, 300_000);
  // Two heartbeats must fit in a lease, so one lost renewal never expires a live replica's slots.
  if (heartbeatMs * 2 > leaseMs)
    fail(
      'REDIS_HEARTBEAT_MS',
      env.REDIS_HEARTBEAT_MS ?? String(heartbeatMs),
      `must be at most half of REDIS_LEASE_MS (${leaseMs})`,
    );
  const replicaId = env.REDIS_REPLICA_ID?.trim() || null;
  if (replicaId !== null && !/^[A-Za-z0-9._-]{1,64}$/.test(replicaId))
    fail('REDIS_REPLICA_ID', replicaId, 'must be 1-64 characters of letters, digits, . _ -');
  return {
    url,
    prefix,
    leaseMs,
    heartbeatMs,
    commandTimeoutMs: int(env, 'REDIS_COMMAND_TIMEOUT_MS', SHARED_STATE_DEFAULTS.REDIS_COMMAND_TIMEOUT_MS, 5, 10_000),
    queueRetryMs: int(env, 'REDIS_QUEUE_RETRY_MS', SHARED_STATE_DEFAULTS.REDIS_QUEUE_RETRY_MS, 20, 60_000),
    pinTtlMs: int(env, 'SESSION_PIN_TTL_MS', SHARED_STATE_DEFAULTS.SESSION_PIN_TTL_MS, 1000, 7 * 24 * 3_600_000),
    replicaId,
  };
}
