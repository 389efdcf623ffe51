import { Inject, Injectable } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from '../fleet/backend-registry.service';

/** Resumes that may be in progress whatever the load. */
const RESUME_BUDGET_MIN = 2;

/**
 * The resume budget (like the retry budget): broken streams being resumed at once may be at most a
 * share (STREAM_RESUME_RATIO) of the requests in flight, and always 2, so a failing fleet cannot
 * turn every stream into a second request. A request counts from its first resume until it ends.
 * Per-balancer: each replica judges its own streams. The one owner of that count.
 */
@Injectable()
export class ResumeBudget {
  private active = 0;
  /** Resumes begun since start (each one, not each request). */
  started = 0;

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
  ) {}

  /** Requests being resumed now. */
  get resuming(): number {
    return this.active;
  }

  /** Whether one more request may start resuming now. */
  allows(): boolean {
    return (
      this.active <
      Math.max(RESUME_BUDGET_MIN, Math.floor(this.registry.totalInFlight() * this.config.streamResumeRatio))
    );
  }

  /** A request began its first resume. */
  begin(): void {
    this.active++;
  }

  /** A request that had begun resuming finished. */
  end(): void {
    this.active--;
  }
}
