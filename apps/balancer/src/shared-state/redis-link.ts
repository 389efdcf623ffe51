import { Logger } from '@nestjs/common';
import { randomBytes } from 'crypto';
import { EventEmitter } from 'events';
import { hostname } from 'os';
import Redis from 'ioredis';
import {
  ACQUIRE_LUA,
  GOODBYE_LUA,
  HEARTBEAT_LUA,
  QUOTA_LUA,
  RATE_LUA,
  REGISTER_LUA,
  RELEASE_LUA,
  SLIDING_LUA,
} from './redis-scripts';
import { redactRedisUrl, SharedStateConfig } from '../config/shared-state-config';

/** Thrown instead of waiting when Redis is not reachable right now: fall back to local state. */
export class SharedStateUnavailable extends Error {
  constructor(why: string) {
    super(`shared state unavailable: ${why}`);
  }
}

type Script = (...args: (string | number)[]) => Promise<unknown>;

/** ioredis with the scripts defined as commands (EVALSHA, EVAL after a restarted Redis forgot them). */
export interface ScriptedRedis extends Redis {
  olbAcquire: Script;
  olbRelease: Script;
  olbHeartbeat: Script;
  olbGoodbye: Script;
  olbRate: Script;
  olbQuota: Script;
  olbSliding: Script;
  olbRegister: Script;
}

/** One slot this replica holds, renewed by every heartbeat. */
export interface HeldSlot {
  backend: string;
  model: string;
  leaseId: string;
}

/**
 * This replica's connection to Redis: a command connection and a subscriber, whether the shared
 * state is usable right now (`up`), and the heartbeat that keeps the replica and its slots alive.
 *
 * Nothing ever waits on a dead Redis: commands are not queued while disconnected and time out
 * after REDIS_COMMAND_TIMEOUT_MS; the first failure marks the link down (callers then use local
 * state), and it comes back up only after a heartbeat has re-registered every slot held here.
 * Events: 'up', 'down', and 'message' (channel without the prefix, payload) for subscribed channels.
 */
export class RedisLink extends EventEmitter {
  private readonly logger = new Logger(RedisLink.name);
  readonly replicaId: string;
  readonly prefix: string;
  private cmd: ScriptedRedis | null = null;
  private sub: Redis | null = null;
  private upNow = false;
  private timer: NodeJS.Timeout | null = null;
  private beating = false;
  private stopped = false;
  private readonly channels = new Set<string>();
  /** Live replicas at the last heartbeat (at least 1: this one); degraded caps divide by it. */
  replicasSeen = 1;
  /** Redis's clock minus ours, from the last heartbeat. */
  clockOffsetMs = 0;
  /** When the link last went down (0 = never). */
  downSince = 0;
  /** Times the link went from up to down. */
  outages = 0;
  /** The slots this replica holds; the heartbeat renews all of them. */
  heldSlots: () => Iterable<HeldSlot> = () => [];

  constructor(readonly config: SharedStateConfig & { url: string }) {
    super();
    this.setMaxListeners(50);
    this.prefix = config.prefix;
    this.replicaId =
      config.replicaId ??
      `${hostname()
        .replace(/[^A-Za-z0-9._-]/g, '-')
        .slice(0, 40)}-${process.pid}-${randomBytes(3).toString('hex')}`;
  }

  get up(): boolean {
    return this.upNow;
  }

  /** The command connection, or SharedStateUnavailable while the link is down. */
  redis(): ScriptedRedis {
    if (!this.upNow || !this.cmd) throw new SharedStateUnavailable('Redis is not reachable');
    return this.cmd;
  }

  /** Connects (without waiting for Redis to answer: start-up never blocks on it). */
  start(): void {
    const common = {
      lazyConnect: true,
      connectTimeout: Math.max(500, this.config.commandTimeoutMs * 5),
      // Reconnect for ever, at most a second apart: the replica re-joins whenever Redis returns.
      retryStrategy: (times: number) => Math.min(50 * times, 1000),
      maxRetriesPerRequest: 0,
    };
    // Auto-pipelining: the commands of one event-loop turn go out in one write (many requests at once).
    const cmd = new Redis(this.config.url, {
      ...common,
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      commandTimeout: this.config.commandTimeoutMs,
    }) as ScriptedRedis;
    cmd.defineCommand('olbAcquire', { numberOfKeys: 0, lua: ACQUIRE_LUA });
    cmd.defineCommand('olbRelease', { numberOfKeys: 0, lua: RELEASE_LUA });
    cmd.defineCommand('olbHeartbeat', { numberOfKeys: 0, lua: HEARTBEAT_LUA });
    cmd.defineCommand('olbGoodbye', { numberOfKeys: 0, lua: GOODBYE_LUA });
    cmd.defineCommand('olbRate', { numberOfKeys: 0, lua: RATE_LUA });
    cmd.defineCommand('olbQuota', { numberOfKeys: 0, lua: QUOTA_LUA });
    cmd.defineCommand('olbSliding', { numberOfKeys: 0, lua: SLIDING_LUA });
    cmd.defineCommand('olbRegister', { numberOfKeys: 0, lua: REGISTER_LUA });
    // The subscriber may queue its SUBSCRIBEs until connected; it never carries a request's command.
    const sub = new Redis(this.config.url, { ...common, enableOfflineQueue: true, autoResubscribe: true });
    this.cmd = cmd;
    this.sub = sub;
    for (const c of [cmd, sub]) {
      // ioredis reports every failed connection attempt here; the link's own log says it once.
      c.on('error', () => undefined);
      c.on('close', () => this.markDown('connection closed'));
      c.on('ready', () => void this.beat());
    }
    sub.on('message', (channel: string, message: string) => {
      if (channel.startsWith(this.prefix)) this.emit('message', channel.slice(this.prefix.length), message);
    });
    this.subscribe(`grant:${this.replicaId}`);
    cmd.connect().catch(() => undefined);
    sub.connect().catch(() => undefined);
    this.schedule();
  }

  /** Subscribes to a channel (name without the prefix); kept across reconnects. */
  subscribe(channel: string): void {
    if (this.channels.has(channel)) return;
    this.channels.add(channel);
    this.sub?.subscribe(this.prefix + channel).catch(() => undefined);
  }

  /** Publishes on a channel (name without the prefix); false when Redis is not reachable. */
  async publish(channel: string, message: string): Promise<boolean> {
    try {
      await this.redis().publish(this.prefix + channel, message);
      return true;
    } catch (e) {
      this.failed(e);
      return false;
    }
  }

  /** A command failed: a timeout or a lost connection marks the link down until a heartbeat succeeds. */
  failed(e: unknown): void {
    if (e instanceof SharedStateUnavailable) return;
    const msg = (e as Error)?.message ?? String(e);
    // A script error (a bug, or Redis refusing a script) is no outage; say it and carry on.
    if (/^(ERR|WRONGTYPE|NOSCRIPT)/.test(msg)) {
      this.logger.error(`Redis refused a command: ${msg}`);
      return;
    }
    this.markDown(msg);
  }

  private markDown(why: string): void {
    if (this.stopped) return;
    if (!this.upNow) return;
    this.upNow = false;
    this.downSince = Date.now();
    this.outages++;
    this.logger.warn(
      `shared state DOWN (${why}): serving on local state; caps split between the ${this.replicasSeen} replica(s) last seen until Redis at ${redactRedisUrl(this.config.url)} answers again`,
    );
    this.emit('down');
    this.schedule();
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.stopped) return;
    // While down, probe often so the replica re-joins soon after Redis returns.
    const ms = this.upNow ? this.config.heartbeatMs : Math.min(this.config.heartbeatMs, 500);
    this.timer = setTimeout(() => void this.beat(), ms);
    this.timer.unref();
  }

  /** Renews liveness and every held slot in one round trip; the first success after an outage brings the link up. */
  async beat(): Promise<boolean> {
    if (this.beating || this.stopped || !this.cmd) return this.upNow;
    this.beating = true;
    try {
      if (this.cmd.status !== 'ready' || this.sub?.status !== 'ready') throw new Error(`connection ${this.cmd.status}`);
      const args: (string | number)[] = [this.prefix, this.replicaId, this.config.leaseMs];
      for (const s of this.heldSlots()) args.push(s.backend, s.model, s.leaseId);
      const sentAt = Date.now();
      const [replicas, now] = (await this.cmd.olbHeartbeat(...args)) as [number, number];
      this.replicasSeen = Math.max(1, replicas);
      this.clockOffsetMs = now - Math.round((sentAt + Date.now()) / 2);
      if (!this.upNow && !this.stopped) {
        this.upNow = true;
        if (this.downSince > 0)
          this.logger.log(
            `shared state UP again after ${Date.now() - this.downSince} ms: slots held here re-registered, ${this.replicasSeen} replica(s) alive`,
          );
        else this.logger.log(`shared state UP: replica ${this.replicaId}, ${this.replicasSeen} replica(s) alive`);
        this.emit('up');
      }
    } catch (e) {
      if (this.upNow) this.failed(e);
    } finally {
      this.beating = false;
      this.schedule();
    }
    return this.upNow;
  }

  /**
   * Leaves cleanly: this replica's slots go back at once instead of after a lease. Without the
   * goodbye (tests), it vanishes like a killed process: its slots and waiters expire.
   */
  async stop(goodbye = true): Promise<void> {
    if (this.stopped) return;
    if (goodbye && this.upNow && this.cmd) {
      const args: string[] = [this.prefix, this.replicaId];
      for (const s of this.heldSlots()) args.push(s.backend, s.model, s.leaseId);
      await this.cmd.olbGoodbye(...args).catch(() => undefined);
    }
    this.stopped = true;
    this.upNow = false;
    if (this.timer) clearTimeout(this.timer);
    this.cmd?.disconnect();
    this.sub?.disconnect();
  }
}
