import type { PolicyName } from '../../config/balancer-config';
import type { RoutingPolicy } from './policy';
import { PredictivePolicy } from './predictive-policy';
import { LeastConnectionsPolicy, LeastLoadedPolicy, RoundRobinPolicy, SeedScorePolicy } from './simple-policies';

export * from './policy';
export * from './predictive-policy';
export * from './simple-policies';

export function createPolicy(name: PolicyName): RoutingPolicy {
  switch (name) {
    case 'predictive':
      return new PredictivePolicy();
    case 'least-loaded':
      return new LeastLoadedPolicy();
    case 'round-robin':
      return new RoundRobinPolicy();
    case 'least-connections':
      return new LeastConnectionsPolicy();
    case 'seed-score':
      return new SeedScorePolicy();
  }
}
