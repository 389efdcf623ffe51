import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { FleetSnapshot, LearnedValues, ReceivedEvent, SHARED_STATE, SharedState } from '../shared-state';
import { BackendRegistry } from './backend-registry.service';
import { BackendEvent, FleetEvents } from './fleet-events';
import { Ewma, LearnedStats } from './learned-stats';

/**
 * Keeps the fleet's admin and health state the same on every replica (REDIS_URL): a cordon or
 * uncordon, and a passive-health ejection, noted here are published to the others (applied there
 * within milliseconds) and kept in Redis for replicas that join later or re-join after an outage;
 * every heartbeat period each replica re-reads them, in case it missed a message. A cordon made
 * while Redis was away is published when it returns, before the fleet-wide state is adopted.
 * Learned speeds converge too: every heartbeat period each replica writes its own and takes the
 * mean of every replica's (SharedLearned).
 */
@Injectable()
export class SharedFleetSync implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(SharedFleetSync.name);
  /** Cordons changed here that Redis has not taken yet (it was away). */
  private readonly unpublished = new Map<string, boolean>();
  private applying = false;
  private learnTimer: NodeJS.Timeout | null = null;
  private exchanging = false;

  constructor(
    private readonly registry: BackendRegistry,
    private readonly events: FleetEvents,
    @Inject(SHARED_STATE) private readonly shared: SharedState | null,
  ) {}

  onModuleInit(): void {
    const shared = this.shared;
    if (!shared) return;
    this.events.listeners.push((e) => this.onLocal(e));
    shared.events.onEvent((e) => this.onRemote(e));
    shared.events.onSnapshot((s) => this.adopt(s));
    shared.link.on('up', () => void this.republish());
    shared.start();
    this.learnTimer = setInterval(() => void this.exchangeLearned(), shared.link.config.heartbeatMs);
    this.learnTimer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.learnTimer) clearInterval(this.learnTimer);
    await this.shared?.stop();
  }

  /** Writes what this replica learned about each backend, and moves each number to the mean of every replica's. */
  async exchangeLearned(): Promise<void> {
    const shared = this.shared;
    if (!shared?.up || this.exchanging) return;
    this.exchanging = true;
    try {
      const mine = new Map<string, LearnedValues>();
      for (const b of this.registry.backends) mine.set(b.name, flattenLearned(b.learned));
      const others = await shared.learned.exchange(mine, shared.link.config.leaseMs * 2);
      for (const b of this.registry.backends) mergeLearned(b.learned, others.get(b.name) ?? []);
    } catch {
      // Redis away: each replica keeps learning on its own meanwhile.
    } finally {
      this.exchanging = false;
    }
  }

  private onLocal(e: BackendEvent): void {
    if (this.applying || !this.shared) return;
    const b = this.registry.get(e.backend);
    if (!b) return;
    if (e.event === 'cordoned' || e.event === 'uncordoned') {
      const on = e.event === 'cordoned';
      this.unpublished.set(b.name, on);
      void this.shared.events.cordon(b.name, on).then((ok) => {
        if (ok && this.unpublished.get(b.name) === on) this.unpublished.delete(b.name);
      });
    } else if (e.event === 'ejected') {
      void this.shared.events.eject(b.name, b.ejectedUntil, b.ejections);
    }
  }

  private onRemote(e: ReceivedEvent): void {
    if (e.t === 'cordon') this.setCordon(e.backend, e.on, `replica ${e.from}`);
    else if (e.t === 'eject')
      this.setEjected(e.backend, this.shared!.events.toLocal(e.until), e.ejections, `replica ${e.from}`);
  }

  private adopt(s: FleetSnapshot): void {
    for (const b of this.registry.backends) {
      if (this.unpublished.has(b.name)) continue;
      const on = s.cordoned.has(b.name);
      if (b.cordoned !== on) this.setCordon(b.name, on, 'fleet state in Redis');
      const until = s.ejectedUntil.get(b.name);
      if (until !== undefined && until > b.ejectedUntil)
        this.setEjected(b.name, until, b.ejections, 'fleet state in Redis');
    }
  }

  private setCordon(name: string, on: boolean, by: string): void {
    const b = this.registry.get(name);
    if (!b || b.cordoned === on) return;
    b.cordoned = on;
    this.note(b.name, on ? 'cordoned' : 'uncordoned', by);
    this.registry.capacityChanged();
  }

  private setEjected(name: string, until: number, ejections: number, by: string): void {
    const b = this.registry.get(name);
    const now = Date.now();
    if (!b || until <= now || until <= b.ejectedUntil) return;
    b.ejectedUntil = until;
    b.slowStartFrom = until;
    b.ejections = Math.max(b.ejections, ejections);
    b.consecutiveErrors = 0;
    this.note(b.name, 'ejected', `by ${by}; for ${until - now} ms`);
    setTimeout(() => this.registry.capacityChanged(), until - now + 5).unref();
  }

  private note(name: string, event: string, detail: string): void {
    const b = this.registry.get(name);
    if (!b) return;
    this.applying = true;
    try {
      this.events.note(b, event, detail);
    } finally {
      this.applying = false;
    }
  }

  /** After an outage: what changed here while Redis was away goes out first. */
  private async republish(): Promise<void> {
    for (const [name, on] of [...this.unpublished]) {
      if (await this.shared!.events.cordon(name, on)) {
        if (this.unpublished.get(name) === on) this.unpublished.delete(name);
        this.logger.log(`published the ${on ? 'cordon' : 'uncordon'} of ${name} made while Redis was away`);
      }
    }
  }
}

const SCALARS = ['loadMsPerByte', 'serviceMsAll', 'ttfbMs', 'tokensPerSecAll', 'ttftMs', 'promptMsPerToken'] as const;

/** A backend's learned numbers, flat ("serviceMs:<model>" for the per-model ones). */
export function flattenLearned(l: LearnedStats): LearnedValues {
  const v: LearnedValues = {};
  for (const k of SCALARS) if (l[k].value !== null) v[k] = l[k].value;
  for (const [m, e] of l.serviceMs) if (e.value !== null) v[`serviceMs:${m}`] = e.value;
  for (const [m, e] of l.tokensPerSec) if (e.value !== null) v[`tokensPerSec:${m}`] = e.value;
  return v;
}

/** Each number becomes the mean of this replica's and the others' (adopted as is where this one knows nothing). */
export function mergeLearned(l: LearnedStats, others: LearnedValues[]): void {
  if (others.length === 0) return;
  const keys = new Set(others.flatMap((o) => Object.keys(o)));
  for (const key of keys) {
    const values = others.map((o) => o[key]).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
    if (values.length === 0) continue;
    const e = ewmaFor(l, key);
    if (!e) continue;
    const sum = values.reduce((a, b) => a + b, 0);
    e.value = e.value === null ? sum / values.length : (e.value + sum) / (values.length + 1);
  }
}

/** A learned number a replica can share (an Ewma, or a learner such as PrefillLearner that keeps one). */
type SharedNumber = { value: number | null };

function ewmaFor(l: LearnedStats, key: string): SharedNumber | null {
  if ((SCALARS as readonly string[]).includes(key)) return l[key as (typeof SCALARS)[number]];
  const at = key.indexOf(':');
  const kind = key.slice(0, at);
  const model = key.slice(at + 1);
  const map = kind === 'serviceMs' ? l.serviceMs : kind === 'tokensPerSec' ? l.tokensPerSec : null;
  if (!map || model === '') return null;
  let e = map.get(model);
  if (!e) map.set(model, (e = new Ewma(0.2)));
  return e;
}
