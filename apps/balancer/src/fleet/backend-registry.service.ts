import { Inject, Injectable } from '@nestjs/common';
import { BALANCER_CONFIG, BackendConfig, BalancerConfig } from '../config/balancer-config';
import { Backend, BackendSource } from './backend';

export type MembershipChange = 'added' | 'retiring' | 'removed';

/**
 * The set of backends and their live state. Upstreams come only from configuration and from the
 * discovery the configuration turns on (DNS names it lists, agents holding its registration token);
 * nothing a client sends adds one. A backend leaves by retiring: no new requests, in-flight ones
 * finish, then it is removed — never cut.
 */
@Injectable()
export class BackendRegistry {
  /** Every backend, retiring ones included until their last request ends. The array itself is kept. */
  readonly backends: Backend[] = [];
  private readonly byName = new Map<string, Backend>();
  /** Listeners told when capacity may have appeared (a slot freed, a backend came back). */
  private readonly capacityListeners: (() => void)[] = [];
  private readonly membershipListeners: ((b: Backend, change: MembershipChange) => void)[] = [];
  /** Backends retiring right now: capacityChanged (every request's end) looks for them only then. */
  private retiringCount = 0;

  constructor(@Inject(BALANCER_CONFIG) readonly config: BalancerConfig) {
    for (const c of config.backends) this.insert(new Backend(c, 'config'));
  }

  get(name: string): Backend | undefined {
    return this.byName.get(name);
  }

  available(now = Date.now()): Backend[] {
    return this.backends.filter((b) => b.isAvailable(now));
  }

  onCapacity(listener: () => void): void {
    this.capacityListeners.push(listener);
  }

  /** Told of every backend added, starting to retire, and removed. */
  onMembership(listener: (b: Backend, change: MembershipChange) => void): void {
    this.membershipListeners.push(listener);
  }

  capacityChanged(): void {
    this.removeRetired();
    for (const l of this.capacityListeners) l();
  }

  totalInFlight(): number {
    let n = 0;
    for (const b of this.backends) n += b.inFlight;
    return n;
  }

  /**
   * Adds a discovered backend. A retiring one of the same name and source comes back instead (an
   * address that flapped out of DNS and in again keeps its state). Returns null when the name is
   * taken by a backend of another source or with another URL: the caller says why.
   */
  add(config: BackendConfig, source: Exclude<BackendSource, 'config'>): Backend | null {
    const existing = this.byName.get(config.name);
    if (existing) {
      if (
        existing.source !== source ||
        existing.config.url !== config.url ||
        existing.config.agentUrl !== config.agentUrl
      )
        return null;
      if (existing.retiring !== null) {
        existing.retiring = null;
        this.retiringCount--;
        this.tell(existing, 'added');
        this.capacityChanged();
      }
      return existing;
    }
    const b = new Backend(config, source);
    this.insert(b);
    this.tell(b, 'added');
    this.capacityChanged();
    return b;
  }

  /** Starts a discovered backend's exit: no new requests; removed once its last request ends. */
  retire(name: string, reason: string): void {
    const b = this.byName.get(name);
    if (!b || b.source === 'config' || b.retiring !== null) return;
    b.retiring = reason;
    this.retiringCount++;
    this.tell(b, 'retiring');
    this.removeRetired();
  }

  /** Backends with a URL, for discovery to refuse a second backend on one server. */
  findByUrl(url: string): Backend | undefined {
    return this.backends.find((b) => b.config.url === url);
  }

  private insert(b: Backend): void {
    b.slowStartMs = this.config.slowStartMs;
    this.backends.push(b);
    this.byName.set(b.name, b);
  }

  private removeRetired(): void {
    if (this.retiringCount === 0) return;
    for (let i = this.backends.length - 1; i >= 0; i--) {
      const b = this.backends[i];
      if (b.retiring === null || b.inFlight > 0) continue;
      this.backends.splice(i, 1);
      this.byName.delete(b.name);
      this.retiringCount--;
      this.tell(b, 'removed');
    }
  }

  private tell(b: Backend, change: MembershipChange): void {
    for (const l of this.membershipListeners) l(b, change);
  }
}
