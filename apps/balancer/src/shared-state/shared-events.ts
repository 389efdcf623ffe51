import { Logger } from '@nestjs/common';
import { RedisLink } from './redis-link';

/** What one replica tells the others about the fleet. */
export type FleetEvent =
  | { t: 'cordon'; backend: string; on: boolean }
  /** Ejected by passive health until `until` (Redis's clock), after `ejections` in a row. */
  | { t: 'eject'; backend: string; until: number; ejections: number }
  | { t: 'admin'; action: string; detail?: Record<string, unknown> };

export type ReceivedEvent = FleetEvent & { from: string };

/** The fleet-wide admin state a replica adopts when it (re-)joins. */
export interface FleetSnapshot {
  cordoned: Set<string>;
  /** Backend -> ejected until, on this replica's clock. */
  ejectedUntil: Map<string, number>;
}

/**
 * Cordons, ejections and admin actions, broadcast to every replica (pub/sub: applied within
 * milliseconds) and kept in Redis (hashes P cordon and P eject) so a replica that joins or re-joins
 * after an outage adopts them; each replica also re-reads them every heartbeat, in case it missed
 * a message. A replica ignores its own messages.
 */
export class SharedEvents {
  private readonly logger = new Logger(SharedEvents.name);
  private readonly handlers: ((e: ReceivedEvent) => void)[] = [];
  private readonly snapshotHandlers: ((s: FleetSnapshot) => void)[] = [];
  private timer: NodeJS.Timeout | null = null;
  received = 0;

  constructor(private readonly link: RedisLink) {
    link.subscribe('events');
    link.on('message', (channel: string, message: string) => {
      if (channel !== 'events') return;
      let e: ReceivedEvent;
      try {
        e = JSON.parse(message) as ReceivedEvent;
      } catch {
        return;
      }
      if (e.from === link.replicaId) return;
      this.received++;
      for (const h of this.handlers) h(e);
    });
    link.on('up', () => void this.sync());
  }

  onEvent(h: (e: ReceivedEvent) => void): void {
    this.handlers.push(h);
  }

  /** Told the fleet-wide state on every (re-)join and every heartbeat period. */
  onSnapshot(h: (s: FleetSnapshot) => void): void {
    this.snapshotHandlers.push(h);
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sync(), this.link.config.heartbeatMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Cordons or uncordons a backend on every replica. false when Redis is not reachable (local only). */
  async cordon(backend: string, on: boolean): Promise<boolean> {
    const P = this.link.prefix;
    try {
      const m = this.link.redis().multi();
      if (on) m.hset(`${P}cordon`, backend, '1');
      else m.hdel(`${P}cordon`, backend);
      m.publish(`${P}events`, JSON.stringify({ t: 'cordon', backend, on, from: this.link.replicaId }));
      await m.exec();
      return true;
    } catch (e) {
      this.link.failed(e);
      return false;
    }
  }

  /** Tells every replica that a backend was ejected until `untilLocalMs` (this replica's clock). */
  async eject(backend: string, untilLocalMs: number, ejections: number): Promise<boolean> {
    const P = this.link.prefix;
    const until = untilLocalMs + this.link.clockOffsetMs;
    try {
      const m = this.link.redis().multi();
      m.hset(`${P}eject`, backend, String(until));
      m.publish(`${P}events`, JSON.stringify({ t: 'eject', backend, until, ejections, from: this.link.replicaId }));
      await m.exec();
      return true;
    } catch (e) {
      this.link.failed(e);
      return false;
    }
  }

  /** Any other admin action, to be applied by every replica. */
  async broadcast(action: string, detail?: Record<string, unknown>): Promise<boolean> {
    return this.link.publish('events', JSON.stringify({ t: 'admin', action, detail, from: this.link.replicaId }));
  }

  /** A time on Redis's clock, on this replica's. */
  toLocal(redisMs: number): number {
    return redisMs - this.link.clockOffsetMs;
  }

  /** Reads the fleet-wide cordons and ejections and hands them to the snapshot handlers. */
  async sync(): Promise<FleetSnapshot | null> {
    if (!this.link.up || this.snapshotHandlers.length === 0) return null;
    const P = this.link.prefix;
    let cordon: Record<string, string>;
    let eject: Record<string, string>;
    try {
      const r = this.link.redis();
      [cordon, eject] = await Promise.all([r.hgetall(`${P}cordon`), r.hgetall(`${P}eject`)]);
    } catch (e) {
      this.link.failed(e);
      return null;
    }
    const snap: FleetSnapshot = { cordoned: new Set(Object.keys(cordon)), ejectedUntil: new Map() };
    for (const [b, until] of Object.entries(eject)) {
      const local = this.toLocal(Number(until));
      if (Number.isFinite(local) && local > Date.now()) snap.ejectedUntil.set(b, local);
      else
        this.link
          .redis()
          .hdel(`${P}eject`, b)
          .catch(() => undefined);
    }
    for (const h of this.snapshotHandlers) {
      try {
        h(snap);
      } catch (e) {
        this.logger.error(`applying the fleet snapshot failed: ${(e as Error).message}`);
      }
    }
    return snap;
  }
}
