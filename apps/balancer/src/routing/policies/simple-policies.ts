import type { Backend } from '../../fleet/backend';
import { argmin, inFlightAt, Pick, PolicyContext, RouteRequest, RoutingPolicy } from './policy';

/** Plain rotation over the candidates (weights honoured by repeating heavier backends' turns). */
export class RoundRobinPolicy implements RoutingPolicy {
  readonly name = 'round-robin';
  private counter = 0;
  pick(candidates: readonly Backend[]): Pick {
    let total = 0;
    for (const b of candidates) total += Math.max(1, Math.round(b.weight));
    let slot = this.counter++ % total;
    for (const b of candidates) {
      slot -= Math.max(1, Math.round(b.weight));
      if (slot < 0) return { backend: b, reason: 'round-robin' };
    }
    return { backend: candidates[0], reason: 'round-robin' };
  }
}

/** Fewest requests in flight per unit of weight (nginx least_conn). */
export class LeastConnectionsPolicy implements RoutingPolicy {
  readonly name = 'least-connections';
  private turn = 0;
  pick(candidates: readonly Backend[], _req?: RouteRequest, ctx?: PolicyContext): Pick {
    const i = argmin(candidates, (b) => inFlightAt(b, null, ctx) / b.weight, this.turn++);
    return { backend: candidates[i], reason: 'least-connections' };
  }
}

/**
 * In-flight requests relative to capacity, plus GPU utilization when a fresh agent reading exists.
 * An unknown reading counts as half busy, never as idle.
 */
export class LeastLoadedPolicy implements RoutingPolicy {
  readonly name = 'least-loaded';
  private turn = 0;
  pick(candidates: readonly Backend[], req: RouteRequest, ctx: PolicyContext): Pick {
    const i = argmin(
      candidates,
      (b) => {
        const util = b.gpuUtilization(ctx.agentStaleMs, req.now);
        const slots = b.slotsFor(req.model) * b.weight;
        return inFlightAt(b, null, ctx) / slots + (util === null ? 0.5 : util / 100);
      },
      this.turn++,
    );
    return { backend: candidates[i], reason: 'least-loaded' };
  }
}

/** The original Python design's score: active_requests * 10 + gpu_utilization (unknown = 0). */
export class SeedScorePolicy implements RoutingPolicy {
  readonly name = 'seed-score';
  private turn = 0;
  pick(candidates: readonly Backend[], req: RouteRequest, ctx: PolicyContext): Pick {
    const i = argmin(
      candidates,
      (b) => inFlightAt(b, null, ctx) * 10 + (b.gpuUtilization(ctx.agentStaleMs, req.now) ?? 0),
      this.turn++,
    );
    return { backend: candidates[i], reason: 'seed-score' };
  }
}
