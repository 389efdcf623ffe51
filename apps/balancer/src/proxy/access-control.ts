import { Inject, Injectable, Optional } from '@nestjs/common';
import { timingSafeEqual } from 'crypto';
import type { IncomingMessage } from 'http';
import {
  ApiKeyConfig,
  BALANCER_CONFIG,
  BalancerConfig,
  ModelManagement,
  normaliseModelName,
} from '../config/balancer-config';
import { modelField } from '../http/request-fields';
import { SHARED_STATE, SharedState } from '../shared-state';
import { MANAGEMENT_KINDS, RouteKind } from './route-table';

export interface Denial {
  status: 401 | 403 | 429;
  message: string;
  headers?: Record<string, string | number>;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/**
 * Optional client API keys. Off when none are configured (Ollama itself has no auth). A key comes
 * as `Authorization: Bearer <key>` (what the openai SDK sends) or `X-API-Key: <key>` (a header any
 * Ollama client can set). Each key may carry a per-minute rate (token bucket) and a model allow-list.
 * With REDIS_URL the rate is one bucket in Redis for every replica (checkSharedRate); while Redis is
 * away each replica keeps a bucket of its own share of the rate (rate / replicas alive, at least 1).
 */
@Injectable()
export class AccessControl {
  private readonly keys: { cfg: ApiKeyConfig; buf: Buffer }[];
  private readonly buckets = new Map<string, Bucket>();
  private readonly keyOf = new WeakMap<IncomingMessage, ApiKeyConfig>();
  private readonly management: ModelManagement;
  private readonly adminToken: Buffer | null;
  /** Requests whose key's rate is to be taken from Redis (checkSharedRate), not from a local bucket. */
  private readonly sharedRated = new WeakSet<IncomingMessage>();

  constructor(
    @Inject(BALANCER_CONFIG) config: BalancerConfig,
    @Optional() @Inject(SHARED_STATE) private readonly shared: SharedState | null = null,
  ) {
    this.keys = config.apiKeys.map((cfg) => ({ cfg, buf: Buffer.from(cfg.key) }));
    this.management = config.modelManagement;
    this.adminToken = config.adminToken ? Buffer.from(config.adminToken) : null;
  }

  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /** Checks the key and rate; null when the request may go on. */
  check(req: IncomingMessage, kind: RouteKind): Denial | null {
    // MODEL_MANAGEMENT: pull/delete/copy/create/push/blobs, and a preload (X-Balancer-Backends).
    if (
      this.management !== 'open' &&
      (MANAGEMENT_KINDS.has(kind) || (kind === 'model' && req.headers['x-balancer-backends'] !== undefined))
    )
      return this.checkManagement(req);
    if (this.keys.length === 0) return null;
    // The admin token may do whatever a client key may (no rate, no model list).
    if (this.isAdminToken(req)) return null;
    // The bare liveness probe stays open so `ollama` clients and orchestrators can see the server.
    // A browser's CORS preflight carries no credentials by design.
    if (kind === 'root' || kind === 'preflight') return null;
    const presented = presentedKey(req);
    if (presented === null)
      return {
        status: 401,
        message: 'missing API key: send Authorization: Bearer <key> or X-API-Key',
        headers: { 'WWW-Authenticate': 'Bearer' },
      };
    const cfg = this.match(presented);
    if (!cfg) return { status: 401, message: 'invalid API key', headers: { 'WWW-Authenticate': 'Bearer' } };
    this.keyOf.set(req, cfg);
    if (cfg.ratePerMinute > 0) {
      if (this.shared?.up) {
        this.sharedRated.add(req);
        return null;
      }
      return this.takeLocal(
        cfg,
        this.shared ? Math.max(1, Math.floor(cfg.ratePerMinute / this.shared.link.replicasSeen)) : cfg.ratePerMinute,
      );
    }
    return null;
  }

  /** A token from this replica's bucket for the key, of `rate` per minute. */
  private takeLocal(cfg: ApiKeyConfig, rate: number): Denial | null {
    const now = Date.now();
    let b = this.buckets.get(cfg.name);
    if (!b) this.buckets.set(cfg.name, (b = { tokens: rate, updatedAt: now }));
    b.tokens = Math.min(rate, b.tokens + ((now - b.updatedAt) * rate) / 60_000);
    b.updatedAt = now;
    if (b.tokens < 1) return rateDenial(cfg, Math.max(1, Math.ceil(((1 - b.tokens) * 60) / rate)));
    b.tokens -= 1;
    return null;
  }

  /**
   * With REDIS_URL: the request's token from the key's bucket in Redis, shared by every replica.
   * null when there is nothing to ask (no rate, a single balancer, Redis away: check() decided).
   * Never rejects; when Redis does not answer in time, this replica's share of the rate decides.
   */
  checkSharedRate(req: IncomingMessage): Promise<Denial | null> | null {
    if (!this.sharedRated.has(req)) return null;
    const cfg = this.keyOf.get(req);
    const shared = this.shared;
    if (!cfg || !shared) return null;
    return shared.rates.take(cfg.name, cfg.ratePerMinute).then(
      (v) => (v.allowed ? null : rateDenial(cfg, Math.max(1, Math.ceil(v.waitMs / 1000)))),
      () => this.takeLocal(cfg, Math.max(1, Math.floor(cfg.ratePerMinute / shared.link.replicasSeen))),
    );
  }

  /**
   * MODEL_MANAGEMENT for one request that changes what the backends hold: open lets it through, admin
   * only with the admin token (no client key needed with it), off never.
   */
  checkManagement(req: IncomingMessage): Denial | null {
    if (this.management === 'open') return null;
    if (this.management === 'off')
      return { status: 403, message: 'model management through the balancer is off (MODEL_MANAGEMENT=off)' };
    if (this.isAdminToken(req)) return null;
    const presented = presentedKey(req);
    if (presented !== null && this.match(presented) !== null)
      return {
        status: 403,
        message: 'model management needs the admin token (MODEL_MANAGEMENT=admin), not a client key',
      };
    return {
      status: 401,
      message: 'model management needs the admin token: Authorization: Bearer <ADMIN_TOKEN>',
      headers: { 'WWW-Authenticate': 'Bearer' },
    };
  }

  /** Whether the request's Authorization is the balancer's admin token (never forwarded upstream). */
  isAdminToken(req: IncomingMessage): boolean {
    return tokenMatches(req, this.adminToken);
  }

  /** Checks the key's model allow-list once the model is known (names compare as Ollama's do, case-insensitively). */
  allowsModel(req: IncomingMessage, model: string): Denial | null {
    const cfg = this.keyOf.get(req);
    if (!cfg || cfg.models.length === 0 || listed(cfg, model)) return null;
    return { status: 403, message: `API key '${cfg.name}' may not use model '${model}'` };
  }

  /**
   * A key's allow-list covers model management too: every model a pull, push, delete, copy or
   * create names (copy's source and destination, create's destination and what it is made
   * from) must be on the list, or a key limited to one model could overwrite it with another.
   */
  allowsManagement(req: IncomingMessage, kind: RouteKind, body: Record<string, unknown>): Denial | null {
    const cfg = this.keyOf.get(req);
    if (!cfg || cfg.models.length === 0) return null;
    for (const name of managedModels(kind, body)) {
      if (!listed(cfg, normaliseModelName(name)))
        return { status: 403, message: `API key '${cfg.name}' may not manage model '${name}'` };
    }
    return null;
  }

  /** Whether the request carries a configured key (no rate accounting). */
  isValidKey(req: IncomingMessage): boolean {
    const presented = presentedKey(req);
    return presented !== null && this.match(presented) !== null;
  }

  keyName(req: IncomingMessage): string | null {
    return this.keyOf.get(req)?.name ?? null;
  }

  /** The configured key a request checked by `check` presented (null without one). */
  keyConfig(req: IncomingMessage): ApiKeyConfig | null {
    return this.keyOf.get(req) ?? null;
  }

  /** The name of the key the request presents, checked here (for views outside the proxy path). */
  presentedKeyName(req: IncomingMessage): string | null {
    const presented = presentedKey(req);
    return presented === null ? null : (this.match(presented)?.name ?? null);
  }

  private match(presented: string): ApiKeyConfig | null {
    const p = Buffer.from(presented);
    let found: ApiKeyConfig | null = null;
    for (const k of this.keys) {
      // Constant-time compare per key; keep scanning so timing does not reveal which one matched.
      if (k.buf.length === p.length && timingSafeEqual(k.buf, p)) found = k.cfg;
    }
    return found;
  }
}

function listed(cfg: ApiKeyConfig, model: string): boolean {
  const m = model.toLowerCase();
  return cfg.models.some((x) => x.toLowerCase() === m);
}

/** The model names a management request touches (strings only: other types fail later as Ollama's would). */
export function managedModels(kind: RouteKind, body: Record<string, unknown>): string[] {
  const out: string[] = [];
  const add = (v: unknown) => {
    if (typeof v === 'string' && v.trim() !== '') out.push(v.trim());
  };
  if (kind === 'pull' || kind === 'push' || kind === 'delete') add(modelField(body));
  else if (kind === 'copy') {
    add(body.source);
    add(body.destination);
  } else if (kind === 'create') {
    add(modelField(body));
    add(body.from);
    // The older API: a Modelfile whose FROM names a model (a path or a blob is not one).
    if (typeof body.modelfile === 'string') {
      for (const m of body.modelfile.matchAll(/^\s*FROM\s+(\S+)/gim)) if (!/^[./~@]/.test(m[1])) add(m[1]);
    }
  }
  return out;
}

function rateDenial(cfg: ApiKeyConfig, retryAfterS: number): Denial {
  return {
    status: 429,
    message: `rate limit of ${cfg.ratePerMinute} requests per minute exceeded for key '${cfg.name}'`,
    headers: { 'Retry-After': retryAfterS },
  };
}

/** Whether the request's `Authorization: Bearer` is this token (constant-time). */
export function tokenMatches(req: IncomingMessage, token: Buffer | null): boolean {
  if (token === null) return false;
  const auth = req.headers.authorization;
  if (typeof auth !== 'string') return false;
  const given = Buffer.from(auth.replace(/^bearer\s+/i, '').trim());
  return given.length === token.length && timingSafeEqual(given, token);
}

export function presentedKey(req: IncomingMessage): string | null {
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '').trim() || null;
  const x = req.headers['x-api-key'];
  if (typeof x === 'string' && x.trim() !== '') return x.trim();
  return null;
}
