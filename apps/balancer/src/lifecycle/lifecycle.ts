import { Global, Injectable, Module } from '@nestjs/common';

/**
 * serving: everything as usual. draining (SIGTERM): readiness answers 503 and new requests get 503
 * with Connection: close, while requests already admitted (queued ones included) go on. closing (the
 * drain deadline passed): the placement queue refuses and empties, open answers are cut.
 */
export type LifecycleState = 'serving' | 'draining' | 'closing';

/** The balancer's one shutdown state; only ever moves forward. */
@Injectable()
export class Lifecycle {
  private current: LifecycleState = 'serving';
  private readonly listeners: ((state: LifecycleState) => void)[] = [];

  get state(): LifecycleState {
    return this.current;
  }

  /** True from SIGTERM on: no new requests are admitted. */
  get admitting(): boolean {
    return this.current === 'serving';
  }

  /** Moves to `next` (never back) and tells the listeners. */
  advance(next: LifecycleState): void {
    if (ORDER[next] <= ORDER[this.current]) return;
    this.current = next;
    for (const l of this.listeners) l(next);
  }

  onChange(listener: (state: LifecycleState) => void): void {
    this.listeners.push(listener);
  }
}

const ORDER: Record<LifecycleState, number> = { serving: 0, draining: 1, closing: 2 };

@Global()
@Module({ providers: [Lifecycle], exports: [Lifecycle] })
export class LifecycleModule {}
