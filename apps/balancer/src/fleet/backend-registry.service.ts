import { Inject, Injectable } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { Backend } from './backend';

/** The set of configured backends and their live state. Upstreams come only from configuration. */
@Injectable()
export class BackendRegistry {
  readonly backends: Backend[];
  private readonly byName = new Map<string, Backend>();
  /** Listeners told when capacity may have appeared (a slot freed, a backend came back). */
  private readonly capacityListeners: (() => void)[] = [];

  constructor(@Inject(BALANCER_CONFIG) readonly config: BalancerConfig) {
    this.backends = config.backends.map((c) => new Backend(c));
    for (const b of this.backends) {
      b.slowStartMs = config.slowStartMs;
      this.byName.set(b.name, b);
    }
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

  capacityChanged(): void {
    for (const l of this.capacityListeners) l();
  }

  totalInFlight(): number {
    let n = 0;
    for (const b of this.backends) n += b.inFlight;
    return n;
  }
}
