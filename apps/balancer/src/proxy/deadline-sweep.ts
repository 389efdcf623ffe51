/** What the sweep needs of a watched attempt. */
export interface Deadlined {
  /** The headers deadline until a response, then the idle limit between body chunks. */
  readonly phase: 'headers' | 'idle';
  readonly startedAt: number;
  /** Body chunks seen so far, and the count and time when the sweep last saw it change. */
  readonly chunks: number;
  seenChunks: number;
  idleSince: number;
  readonly done: boolean;
  /** Its deadline passed. */
  onDeadline(which: 'headers' | 'idle'): void;
}

/**
 * Per-attempt deadlines (headers, then idle) through one sweep: it checks every watched attempt each
 * `intervalMs` instead of a timer per attempt and a timer refresh per chunk, which cost about 7 % of
 * the balancer's throughput on small requests. A deadline fires at most `intervalMs` late, never early.
 */
export class DeadlineSweep {
  private readonly watched = new Set<Deadlined>();
  private timer: NodeJS.Timeout | null = null;
  readonly intervalMs: number;

  constructor(
    private readonly headersTimeoutMs: number,
    private readonly idleTimeoutMs: number,
  ) {
    this.intervalMs = Math.min(1000, Math.max(10, Math.floor(Math.min(headersTimeoutMs, idleTimeoutMs) / 10)));
  }

  watch(a: Deadlined): void {
    this.watched.add(a);
    if (this.timer === null) {
      this.timer = setInterval(() => this.check(Date.now()), this.intervalMs);
      this.timer.unref();
    }
  }

  unwatch(a: Deadlined): void {
    this.watched.delete(a);
  }

  /** Times out the attempts past their deadline; stops the timer once nothing is watched. */
  check(now: number): void {
    if (this.watched.size === 0) {
      this.stop();
      return;
    }
    for (const a of this.watched) {
      if (a.done) {
        this.watched.delete(a);
      } else if (a.phase === 'headers') {
        if (now - a.startedAt >= this.headersTimeoutMs) a.onDeadline('headers');
      } else if (a.chunks !== a.seenChunks) {
        a.seenChunks = a.chunks;
        a.idleSince = now;
      } else if (now - a.idleSince >= this.idleTimeoutMs) {
        a.onDeadline('idle');
      }
    }
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
