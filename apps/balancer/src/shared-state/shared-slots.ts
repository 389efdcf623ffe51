import { HeldSlot, RedisLink, SharedStateUnavailable } from './redis-link';

/** A backend's caps as this replica is configured (0 = no cap). */
export interface SlotCaps {
  backendCap: number;
  modelCap: number;
}

/** A slot granted by Redis: give it back with release() exactly once (a second call does nothing). */
export interface SharedSlot {
  readonly leaseId: string;
  readonly backend: string;
  /** '' when the request names no model. */
  readonly model: string;
  /** How long the request waited for it. */
  readonly queuedMs: number;
}

export interface PlaceRequest {
  model: string | null;
  /** Backends this request must not use (tried already). */
  exclude?: Iterable<string>;
  /** Backends whose counts to refresh as well (the policies' view), never taken. */
  observe?: () => string[];
  /**
   * The backends that may serve, in preference order; asked again at each retry (health, cordons and
   * inventory change while a request waits). May throw: the request then fails with that error.
   */
  targets: () => string[];
  /** Whether a slot handed over on this backend can still be used here (checked when it arrives). */
  accept?: (backend: string) => boolean;
  /** false: take a free slot or give up (null), never wait. */
  wait: boolean;
  /** Priority class, 0 the highest (default): waiters of a higher class are ahead in line. */
  priority?: number;
  /** Called once if the request waits, with a cancel function (queue timeout, client gone). */
  onQueued?: (cancel: (reason: Error) => void) => void;
}

export interface SlotCountsListener {
  (backend: string, model: string, inFlight: number, modelInFlight: number): void;
}

interface Waiter {
  wid: string;
  member: string;
  model: string;
  priority: number;
  exclude: string[];
  /** Redis time of the enqueue (place in line); 0 until Redis answered. */
  score: number;
  enqueuedAt: number;
  req: PlaceRequest;
  settled: boolean;
  retrying: boolean;
  retried: boolean;
  resolve: (slot: SharedSlot) => void;
  reject: (e: Error) => void;
}

/** Waiters per model re-checked each round (the oldest may not fit where the room is). */
const RETRY_PER_MODEL = 4;

type AcquireReply = [number, string, number, number, ...(string | number)[]];

/**
 * Global concurrency slots on Redis. A slot is a lease (a member of the backend's and the
 * backend-and-model's sorted sets, scored by its expiry) that the holder's heartbeat renews; the
 * check against the cap and the take are one Lua script, so no two replicas can both take the last
 * slot. A request that finds every candidate full waits in its model's list in Redis, ordered by
 * enqueue time across all replicas; a release hands its slot straight to the oldest waiter that may
 * use that backend and tells the waiter's replica (pub/sub). Capacity that appears without a
 * release (a dead replica's leases expiring, an uncordon) is found by each replica re-checking for
 * its oldest waiter of each model every REDIS_QUEUE_RETRY_MS.
 */
export class SharedSlots {
  private seq = 0;
  /** Slots held here: the heartbeat renews them; release and the goodbye take them out. */
  readonly held = new Map<string, HeldSlot & { caps: SlotCaps }>();
  private readonly waiters = new Map<string, Waiter>();
  /** Waiter entries this replica gave up on while Redis was unreachable; removed when it returns. */
  private readonly orphans = new Map<string, string>();
  private retryTimer: NodeJS.Timeout | null = null;
  /** Slots held here per backend, and per backend|model. */
  private readonly heldAt = new Map<string, number>();
  /** The fleet-wide counts Redis last reported per backend, and per backend|model. */
  private readonly globalAt = new Map<string, number>();
  /** Requests waiting in Redis's line per model, as last reported. */
  private readonly lineAt = new Map<string, number>();
  private readonly countsListeners: SlotCountsListener[] = [];
  readonly counters = { granted: 0, handedOver: 0, returned: 0, queued: 0, retries: 0 };

  constructor(
    private readonly link: RedisLink,
    private readonly capsOf: (backend: string, model: string) => SlotCaps,
  ) {
    link.heldSlots = () => this.held.values();
    link.subscribe('capacity');
    const grantChannel = `grant:${link.replicaId}`;
    link.on('message', (channel: string, message: string) => {
      if (channel === grantChannel) this.onGrant(message);
      else if (channel === 'capacity') this.retryWaiters();
    });
    link.on('down', () => this.onDown());
    link.on('up', () => this.onUp());
  }

  /** Told of the global counts at a backend whenever a script reports them. */
  onCounts(l: SlotCountsListener): void {
    this.countsListeners.push(l);
  }

  /**
   * Requests the other replicas have in flight at the backend (for the model, or in all with
   * null), from the counts Redis reported last (each slot request and release reports those of the
   * backends it named); 0 while Redis is away.
   */
  othersInFlight(backend: string, model: string | null): number {
    if (!this.link.up) return 0;
    const k = model === null ? backend : `${backend}|${model}`;
    return Math.max(0, (this.globalAt.get(k) ?? 0) - (this.heldAt.get(k) ?? 0));
  }

  /** Requests waiting for the model in Redis's line, on every replica, as last reported (0 while Redis is away). */
  waitingFor(model: string | null): number {
    return this.link.up ? (this.lineAt.get(model ?? '') ?? 0) : 0;
  }

  private count(backend: string, model: string, d: number): void {
    this.heldAt.set(backend, (this.heldAt.get(backend) ?? 0) + d);
    if (model !== '') this.heldAt.set(`${backend}|${model}`, (this.heldAt.get(`${backend}|${model}`) ?? 0) + d);
  }

  get waiting(): number {
    return this.waiters.size;
  }

  /**
   * Takes a slot on the first target with room (global caps), or waits in line for one when
   * `wait`. Rejects with SharedStateUnavailable when Redis cannot answer (the caller then places
   * the request on local state), or with what targets() threw.
   */
  place(req: PlaceRequest): Promise<SharedSlot | null> {
    const model = req.model ?? '';
    let targets: string[];
    try {
      targets = req.targets();
      this.link.redis();
    } catch (e) {
      return Promise.reject(e);
    }
    const leaseId = `${this.link.replicaId}/${++this.seq}`;
    if (!req.wait) {
      return this.acquire(model, leaseId, '', targets, false, 0, req.observe?.()).then((reply) =>
        reply[0] === 1 ? this.took(reply[1], model, leaseId, 0) : null,
      );
    }
    return new Promise<SharedSlot>((resolve, reject) => {
      const wid = String(++this.seq);
      const exclude = req.exclude ? [...req.exclude] : [];
      const w: Waiter = {
        wid,
        member: `${this.link.replicaId}|${wid}|${exclude.join(',')}`,
        model,
        priority: Math.max(0, Math.floor(req.priority ?? 0)),
        exclude,
        score: 0,
        enqueuedAt: Date.now(),
        req,
        settled: false,
        retrying: true,
        retried: false,
        resolve,
        reject,
      };
      // Registered before asking: a grant (on the subscriber connection) may overtake the reply.
      this.waiters.set(wid, w);
      this.acquire(model, leaseId, w.member, targets, true, w.priority, req.observe?.()).then(
        (reply) => {
          w.retrying = false;
          if (w.settled) return this.afterSettled(w, reply, model, leaseId);
          if (reply[0] === 1) return this.settle(w, this.took(reply[1], model, leaseId, 0));
          w.score = reply[2];
          this.counters.queued++;
          req.onQueued?.((reason) => this.cancel(w, reason));
          this.armRetry();
        },
        (e) => {
          w.retrying = false;
          if (!w.settled) this.fail(w, e);
        },
      );
    });
  }

  /** Gives a slot back: idempotent, never throws, never waits on Redis. */
  release(slot: SharedSlot): void {
    const held = this.held.get(slot.leaseId);
    if (!held) return;
    this.held.delete(slot.leaseId);
    this.count(held.backend, held.model, -1);
    this.sendRelease(held.backend, held.model, held.leaseId, held.caps);
  }

  /**
   * Records a slot taken on local state (Redis was unreachable): the next heartbeat registers it, so
   * the global counts include it once Redis is back. Release it like any other.
   */
  adoptLocal(backend: string, model: string | null): SharedSlot {
    const m = model ?? '';
    const leaseId = `${this.link.replicaId}/${++this.seq}`;
    this.held.set(leaseId, { backend, model: m, leaseId, caps: this.capsOf(backend, m) });
    this.count(backend, m, 1);
    return { leaseId, backend, model: m, queuedMs: 0 };
  }

  /** Stops retrying; waiters are rejected (the link going away is the caller's business). */
  close(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    for (const w of [...this.waiters.values()]) this.fail(w, new SharedStateUnavailable('shutting down'));
  }

  private async acquire(
    model: string,
    leaseId: string,
    member: string,
    targets: string[],
    enqueue: boolean,
    priority: number,
    observe: string[] = [],
  ): Promise<AcquireReply> {
    const args: (string | number)[] = [
      this.link.prefix,
      model,
      this.link.replicaId,
      leaseId,
      member,
      this.link.config.leaseMs,
      enqueue ? 1 : 0,
      priority,
    ];
    for (const b of targets) {
      const c = this.capsOf(b, model);
      args.push(b, c.backendCap, c.modelCap);
    }
    for (const b of observe) if (!targets.includes(b)) args.push(`?${b}`, 0, 0);
    let reply: AcquireReply;
    try {
      reply = (await this.link.redis().olbAcquire(...args)) as AcquireReply;
    } catch (e) {
      this.link.failed(e);
      throw e instanceof SharedStateUnavailable ? e : new SharedStateUnavailable((e as Error).message);
    }
    this.lineAt.set(model, Number(reply[3]) + (reply[0] === 2 ? 1 : 0));
    for (let i = 4; i + 2 < reply.length; i += 3)
      this.tellCounts(String(reply[i]), model, Number(reply[i + 1]), Number(reply[i + 2]));
    return reply;
  }

  private took(backend: string, model: string, leaseId: string, queuedMs: number): SharedSlot {
    this.held.set(leaseId, { backend, model, leaseId, caps: this.capsOf(backend, model) });
    this.count(backend, model, 1);
    this.counters.granted++;
    return { leaseId, backend, model, queuedMs };
  }

  private settle(w: Waiter, slot: SharedSlot): void {
    w.settled = true;
    this.waiters.delete(w.wid);
    w.resolve(slot);
    if (this.waiters.size === 0) this.disarmRetry();
  }

  private fail(w: Waiter, e: unknown): void {
    w.settled = true;
    this.waiters.delete(w.wid);
    // Its entry in Redis (if any) is removed when Redis answers again; a grant meanwhile is returned.
    this.orphans.set(w.member, w.model);
    w.reject(e instanceof Error ? e : new Error(String(e)));
    if (this.waiters.size === 0) this.disarmRetry();
  }

  private cancel(w: Waiter, reason: Error): void {
    if (w.settled) return;
    w.settled = true;
    this.waiters.delete(w.wid);
    this.dropEntry(w.member, w.model);
    w.reject(reason);
    if (this.waiters.size === 0) this.disarmRetry();
  }

  /** A reply for a waiter that was meanwhile granted, cancelled or failed: undo what it did. */
  private afterSettled(w: Waiter, reply: AcquireReply, model: string, leaseId: string): void {
    if (reply[0] === 1) {
      this.sendRelease(reply[1], model, leaseId, this.capsOf(reply[1], model));
      this.counters.returned++;
    } else if (reply[0] === 2) {
      this.dropEntry(w.member, w.model);
    }
  }

  private dropEntry(member: string, model: string): void {
    try {
      this.link
        .redis()
        .zrem(`${this.link.prefix}w:${model}`, member)
        .catch((e) => {
          this.orphans.set(member, model);
          this.link.failed(e);
        });
    } catch {
      this.orphans.set(member, model);
    }
  }

  private sendRelease(
    backend: string,
    model: string,
    leaseId: string,
    caps: SlotCaps,
    requeue?: { member: string; score: number },
  ): void {
    let r;
    try {
      r = this.link.redis();
    } catch {
      // Redis unreachable: the lease is no longer renewed and expires within REDIS_LEASE_MS.
      return;
    }
    r.olbRelease(
      this.link.prefix,
      backend,
      model,
      leaseId,
      caps.backendCap,
      caps.modelCap,
      this.link.config.leaseMs,
      requeue?.member ?? '',
      requeue?.score ?? 0,
    ).then(
      (reply) => {
        const [, , cb, cm] = reply as number[];
        this.tellCounts(backend, model, cb, cm);
      },
      (e) => this.link.failed(e),
    );
  }

  /** A release elsewhere handed one of our waiters a slot: "waiter|backend|lease|in flight|for the model|model". */
  private onGrant(message: string): void {
    const parts: string[] = [];
    let at = 0;
    for (let k = 0; k < 5; k++) {
      const next = message.indexOf('|', at);
      if (next < 0) return;
      parts.push(message.slice(at, next));
      at = next + 1;
    }
    const [wid, backend, leaseId, cb, cm] = parts;
    const model = message.slice(at);
    this.tellCounts(backend, model, Number(cb), Number(cm));
    const w = this.waiters.get(wid);
    if (!w || w.settled) {
      // Timed out, cancelled or already served: the slot goes on to the next in line.
      this.counters.returned++;
      this.sendRelease(backend, model, leaseId, this.capsOf(backend, model));
      return;
    }
    if (w.req.accept && !w.req.accept(backend)) {
      // Not usable here (say ejected in our view): back in line at the same place, this backend excluded.
      w.exclude.push(backend);
      w.member = `${this.link.replicaId}|${w.wid}|${w.exclude.join(',')}`;
      this.counters.returned++;
      this.sendRelease(backend, model, leaseId, this.capsOf(backend, model), { member: w.member, score: w.score });
      return;
    }
    this.counters.handedOver++;
    if (w.retried) this.dropEntry(w.member, w.model);
    this.settle(w, this.took(backend, model, leaseId, Date.now() - w.enqueuedAt));
  }

  private armRetry(): void {
    if (this.retryTimer || this.waiters.size === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryWaiters();
      this.armRetry();
    }, this.link.config.queueRetryMs);
    this.retryTimer.unref();
  }

  private disarmRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /**
   * Re-checks for the oldest local waiters of each model (up to RETRY_PER_MODEL, one after the
   * other): finds capacity no release announced, and puts back a waiter whose entry Redis lost.
   * More than one per model because the oldest may be unable to use the backend that has room.
   */
  retryWaiters(): void {
    if (!this.link.up || this.waiters.size === 0) return;
    const byModel = new Map<string, Waiter[]>();
    for (const w of this.waiters.values()) {
      if (w.settled || w.score === 0) continue;
      let list = byModel.get(w.model);
      if (!list) byModel.set(w.model, (list = []));
      list.push(w);
    }
    for (const list of byModel.values()) {
      list.sort((p, q) => p.score - q.score);
      void this.retryInOrder(list.slice(0, RETRY_PER_MODEL));
    }
  }

  private async retryInOrder(list: Waiter[]): Promise<void> {
    for (const w of list) if (this.link.up) await this.retry(w);
  }

  private async retry(w: Waiter): Promise<void> {
    if (w.retrying || w.settled) return;
    let targets: string[];
    try {
      targets = w.req.targets();
    } catch (e) {
      this.cancel(w, e as Error);
      return;
    }
    w.retrying = true;
    w.retried = true;
    this.counters.retries++;
    const leaseId = `${this.link.replicaId}/${++this.seq}`;
    let reply: AcquireReply;
    try {
      reply = await this.acquire(w.model, leaseId, w.member, targets, true, w.priority, w.req.observe?.());
    } catch {
      w.retrying = false;
      return;
    } finally {
      w.retrying = false;
    }
    if (w.settled) return this.afterSettled(w, reply, w.model, leaseId);
    if (reply[0] === 1) this.settle(w, this.took(reply[1], w.model, leaseId, Date.now() - w.enqueuedAt));
  }

  private onDown(): void {
    // Waiting on Redis is over: each waiter goes back to its caller, which places it on local state.
    for (const w of [...this.waiters.values()])
      this.fail(w, new SharedStateUnavailable('Redis went away while the request waited'));
  }

  private onUp(): void {
    if (this.orphans.size === 0) return;
    const r = this.link.redis();
    const pipe = r.pipeline();
    for (const [member, model] of this.orphans) pipe.zrem(`${this.link.prefix}w:${model}`, member);
    this.orphans.clear();
    pipe.exec().catch((e) => this.link.failed(e));
  }

  private tellCounts(backend: string, model: string, inFlight: number, modelInFlight: number): void {
    this.globalAt.set(backend, inFlight);
    if (model !== '') this.globalAt.set(`${backend}|${model}`, modelInFlight);
    for (const l of this.countsListeners) l(backend, model, inFlight, modelInFlight);
  }

  /** For logs: how this replica's share of the shared queue is doing. */
  describe(): string {
    return `${this.held.size} slot(s) held, ${this.waiters.size} waiting`;
  }
}
