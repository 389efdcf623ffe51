import { createHash } from 'crypto';
import { RedisLink, SharedStateUnavailable } from './redis-link';

/** A key of `kind` for a name that may come from a client: hashed, so nothing it sent is stored. */
function hashedKey(link: RedisLink, kind: string, name: string): string {
  return `${link.prefix}${kind}:${createHash('sha256').update(name).digest('base64url').slice(0, 27)}`;
}

/**
 * Session pins shared by every replica: "this conversation runs on that backend", a plain key with
 * a TTL renewed on each use. The session key is hashed, so nothing a client sent is stored.
 */
export class SharedPins {
  constructor(
    private readonly link: RedisLink,
    private readonly ttlMs: number,
  ) {}

  private key(sessionKey: string): string {
    return hashedKey(this.link, 'pin', sessionKey);
  }

  /** The pinned backend, or null. Rejects with SharedStateUnavailable when Redis cannot answer. */
  async get(sessionKey: string): Promise<string | null> {
    try {
      return await this.link.redis().get(this.key(sessionKey));
    } catch (e) {
      this.link.failed(e);
      throw e instanceof SharedStateUnavailable ? e : new SharedStateUnavailable((e as Error).message);
    }
  }

  /** Pins (or re-pins) the session; fire and forget. */
  set(sessionKey: string, backend: string): void {
    try {
      this.link
        .redis()
        .set(this.key(sessionKey), backend, 'PX', this.ttlMs)
        .catch((e) => this.link.failed(e));
    } catch {
      // Redis unreachable: the local pin still holds on this replica.
    }
  }
}

/**
 * An action on the fleet that one replica at a time should take (a background load of a model):
 * claimed in Redis for a while (SET NX PX), never released early (the others learn of the action
 * itself by their own /api/ps reads, which the claim outlasts).
 */
export class SharedClaims {
  constructor(private readonly link: RedisLink) {}

  /**
   * Whether this replica may go ahead: it holds the claim now, or Redis cannot answer (each replica
   * then acts on its own, as a single balancer would).
   */
  async claim(name: string, ttlMs: number): Promise<boolean> {
    try {
      const key = hashedKey(this.link, 'claim', name);
      const got = await this.link.redis().set(key, this.link.replicaId, 'PX', Math.max(1, Math.round(ttlMs)), 'NX');
      return got === 'OK';
    } catch (e) {
      this.link.failed(e);
      return true;
    }
  }
}

export interface RateVerdict {
  allowed: boolean;
  /** When refused: ms until one request's worth of tokens is back. */
  waitMs: number;
}

/** Per-key request rates (a token bucket refilled per minute) counted across every replica. */
export class SharedRateLimiter {
  constructor(private readonly link: RedisLink) {}

  /** Takes `cost` tokens from the key's bucket. Rejects with SharedStateUnavailable when Redis cannot answer. */
  async take(keyName: string, ratePerMinute: number, cost = 1): Promise<RateVerdict> {
    try {
      const [ok, waitMs] = (await this.link
        .redis()
        .olbRate(`${this.link.prefix}rate:${keyName}`, ratePerMinute, cost)) as [number, number];
      return { allowed: ok === 1, waitMs };
    } catch (e) {
      this.link.failed(e);
      throw e instanceof SharedStateUnavailable ? e : new SharedStateUnavailable((e as Error).message);
    }
  }
}

export interface QuotaState {
  /** Whether the amount was counted (within the limit). */
  added: boolean;
  /** The window's total after this call. */
  used: number;
  /** Ms until the window starts afresh. */
  resetMs: number;
}

/**
 * Usage counters per fixed window (e.g. tokens per key per hour), shared by every replica: for
 * quotas checked before a request (take with a limit) and usage recorded after it (add).
 */
export class SharedQuotas {
  constructor(private readonly link: RedisLink) {}

  private async run(name: string, amount: number, limit: number, windowMs: number): Promise<QuotaState> {
    try {
      const [added, used, resetMs] = (await this.link
        .redis()
        .olbQuota(`${this.link.prefix}q:${name}:${windowMs}`, amount, limit, windowMs)) as [number, number, number];
      return { added: added === 1, used, resetMs };
    } catch (e) {
      this.link.failed(e);
      throw e instanceof SharedStateUnavailable ? e : new SharedStateUnavailable((e as Error).message);
    }
  }

  /** Adds `amount` only if the window's total stays within `limit`. */
  take(name: string, amount: number, limit: number, windowMs: number): Promise<QuotaState> {
    if (!(limit > 0)) throw new RangeError('limit must be > 0 (use add for unlimited counting)');
    return this.run(name, amount, limit, windowMs);
  }

  /** Adds `amount` whatever the total (usage known only after the answer). */
  add(name: string, amount: number, windowMs: number): Promise<QuotaState> {
    return this.run(name, amount, 0, windowMs);
  }

  /** The window's total so far. */
  read(name: string, windowMs: number): Promise<QuotaState> {
    return this.run(name, 0, 0, windowMs);
  }

  /**
   * A sliding window of `buckets` x `bucketMs` (UsageLedger's shape: 60 x 1 s for the minute,
   * 1,440 x 1 min for the day). limit > 0: adds only within the limit, and a refusal's resetMs says
   * when enough of the window expires (-1: never, the amount alone is over the limit); limit 0: adds.
   */
  async slide(name: string, amount: number, limit: number, bucketMs: number, buckets: number): Promise<QuotaState> {
    try {
      const [added, used, resetMs] = (await this.link
        .redis()
        .olbSliding(`${this.link.prefix}s:${name}:${bucketMs}x${buckets}`, amount, limit, bucketMs, buckets)) as [
        number,
        number,
        number,
      ];
      return { added: added === 1, used, resetMs };
    } catch (e) {
      this.link.failed(e);
      throw e instanceof SharedStateUnavailable ? e : new SharedStateUnavailable((e as Error).message);
    }
  }
}

/** One replica's learned numbers for one backend, flat: name -> value. */
export type LearnedValues = Record<string, number>;

/**
 * Learned statistics exchanged between replicas: each writes what it learned per backend into a
 * hash (field = replica, with the time on Redis's clock) and reads the others' recent ones, in one
 * pipelined round trip for the whole fleet. The caller merges (SharedFleetSync: the mean), so every
 * replica converges on what all of them saw.
 */
export class SharedLearned {
  constructor(private readonly link: RedisLink) {}

  /** Writes `mine` per backend; returns, per backend, the other replicas' values fresher than `maxAgeMs`. */
  async exchange(mine: Map<string, LearnedValues>, maxAgeMs: number): Promise<Map<string, LearnedValues[]>> {
    const names = [...mine.keys()];
    const read = await exchangeFields(
      this.link,
      names.map((b) => [`${this.link.prefix}learned:${b}`, mine.get(b)]),
      maxAgeMs,
    );
    return new Map(names.map((b, i) => [b, read[i].fresh as LearnedValues[]]));
  }
}

/**
 * One pipelined round trip over hashes with a field per replica: writes `value` (with the time on
 * Redis's clock) as this replica's field of each key, renews the key's expiry, and reads every field
 * back. Per key: the other replicas' values fresher than `maxAgeMs` (objects only; entries another
 * version wrote are skipped) and the fields older than that. Rejects with SharedStateUnavailable when
 * Redis cannot answer.
 */
async function exchangeFields(
  link: RedisLink,
  writes: [key: string, value: unknown][],
  maxAgeMs: number,
): Promise<{ fresh: unknown[]; stale: string[] }[]> {
  const now = Date.now() + link.clockOffsetMs;
  let replies: [Error | null, unknown][] | null;
  try {
    const pipe = link.redis().pipeline();
    for (const [key, value] of writes) {
      pipe.hset(key, link.replicaId, JSON.stringify({ at: now, v: value }));
      pipe.pexpire(key, maxAgeMs * 2);
      pipe.hgetall(key);
    }
    replies = await pipe.exec();
  } catch (e) {
    link.failed(e);
    throw e instanceof SharedStateUnavailable ? e : new SharedStateUnavailable((e as Error).message);
  }
  return writes.map((_, i) => {
    const [err, all] = replies?.[i * 3 + 2] ?? [null, null];
    const out = { fresh: [] as unknown[], stale: [] as string[] };
    if (err || !all || typeof all !== 'object') return out;
    for (const [replica, raw] of Object.entries(all as Record<string, string>)) {
      if (replica === link.replicaId) continue;
      let e: { at?: unknown; v?: unknown };
      try {
        e = JSON.parse(raw) as { at?: unknown; v?: unknown };
      } catch {
        continue; // another version's entry
      }
      if (typeof e.at !== 'number' || !(now - e.at <= maxAgeMs)) out.stale.push(replica);
      else if (e.v && typeof e.v === 'object') out.fresh.push(e.v);
    }
    return out;
  });
}

/** One model's demand as a replica reads it (routing's Demand: arrivals, rate, perS). */
export interface DemandReading {
  arrivals: number;
  rate: number;
  /** Null while that replica has not seen a full window of traffic. */
  perS: number | null;
}

/** At most this many models are read from one replica's entry (names come from clients). */
const MAX_DEMAND_MODELS = 256;

/** Each replica's per-model demand in one Redis hash (P demand, a field per replica), summed by the others. */
export class SharedDemand {
  constructor(private readonly link: RedisLink) {}

  /**
   * Writes this replica's readings and returns the other replicas' fresher than `maxAgeMs`, summed
   * per model (perS: the sum of those that have one, null where none has). Entries of replicas gone
   * longer are deleted.
   */
  async exchange(mine: Record<string, DemandReading>, maxAgeMs: number): Promise<Map<string, DemandReading>> {
    const key = `${this.link.prefix}demand`;
    const [{ fresh, stale }] = await exchangeFields(this.link, [[key, mine]], maxAgeMs);
    const sum = new Map<string, DemandReading>();
    for (const v of fresh)
      for (const [model, r] of Object.entries(v as Record<string, Partial<DemandReading>>).slice(
        0,
        MAX_DEMAND_MODELS,
      )) {
        if (!r || !isRate(r.arrivals) || !isRate(r.rate) || !(r.perS === null || isRate(r.perS))) continue;
        const s = sum.get(model) ?? { arrivals: 0, rate: 0, perS: null };
        s.arrivals += r.arrivals;
        s.rate += r.rate;
        if (r.perS !== null) s.perS = (s.perS ?? 0) + r.perS;
        sum.set(model, s);
      }
    if (stale.length > 0)
      this.link
        .redis()
        .hdel(key, ...stale)
        .catch(() => undefined);
    return sum;
  }
}

const isRate = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;

/** A registration as SharedRegistrations stores it (the fleet's Registration fits). */
export interface StoredRegistration {
  name: string;
  ollamaUrl: string;
  agentUrl?: string;
  expiresAt: number;
}

export type RegisterVerdict =
  | { ok: true; created: boolean }
  | { ok: false; conflict: 'name'; heldUrl: string; heldUntil: number }
  | { ok: false; conflict: 'url'; heldBy: string }
  | { ok: false; conflict: 'full' };

/** Agents' registrations in one Redis hash, seen by every replica (P reg). */
export class SharedRegistrations {
  constructor(private readonly link: RedisLink) {}

  private get key(): string {
    return `${this.link.prefix}reg`;
  }

  private fail(e: unknown): never {
    this.link.failed(e);
    throw e instanceof SharedStateUnavailable ? e : new SharedStateUnavailable((e as Error).message);
  }

  async upsert<R extends StoredRegistration>(reg: R, now: number, max: number): Promise<RegisterVerdict> {
    let r: (string | number)[];
    try {
      r = (await this.link
        .redis()
        .olbRegister(this.key, reg.name, JSON.stringify(reg), reg.ollamaUrl, reg.agentUrl ?? '', now, max)) as (
        string | number
      )[];
    } catch (e) {
      return this.fail(e);
    }
    if (r[0] === 200) return { ok: true, created: r[1] === 1 };
    if (r[0] === 429) return { ok: false, conflict: 'full' };
    if (r[1] === 'url') return { ok: false, conflict: 'url', heldBy: String(r[2]) };
    return { ok: false, conflict: 'name', heldUrl: String(r[2]), heldUntil: Number(r[3]) };
  }

  async remove(name: string): Promise<boolean> {
    try {
      return (await this.link.redis().hdel(this.key, name)) === 1;
    } catch (e) {
      return this.fail(e);
    }
  }

  /** Live registrations, parsed as stored (expired ones are left for the next upsert to drop). */
  async list<R extends StoredRegistration>(now: number): Promise<R[]> {
    let all: Record<string, string>;
    try {
      all = await this.link.redis().hgetall(this.key);
    } catch (e) {
      return this.fail(e);
    }
    const out: R[] = [];
    for (const raw of Object.values(all)) {
      try {
        const r = JSON.parse(raw) as R;
        if (typeof r.expiresAt === 'number' && r.expiresAt > now) out.push(r);
      } catch {
        // not ours: skip
      }
    }
    return out;
  }
}
