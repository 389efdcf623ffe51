import type { Provider } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { SHARED_STATE, SharedState, SlotCaps } from '../shared-state';
import { BackendRegistry } from './backend-registry.service';

/**
 * SHARED_STATE: the connection to Redis and what it shares, when REDIS_URL is set; null otherwise
 * (a single balancer, everything in memory). The caps sent with each slot request are this
 * replica's configured ones, shrunk during a backend's slow start as they are locally.
 */
export const sharedStateProvider: Provider = {
  provide: SHARED_STATE,
  inject: [BALANCER_CONFIG, BackendRegistry],
  useFactory: (config: BalancerConfig, registry: BackendRegistry): SharedState | null => {
    const s = config.sharedState;
    if (s.url === null) return null;
    return new SharedState({ ...s, url: s.url }, (name, model): SlotCaps => {
      const b = registry.get(name);
      // A backend this replica does not know (configurations that differ): no cap it could state.
      if (!b) return { backendCap: 0, modelCap: 0 };
      const factor = b.slowStartFactor();
      const eff = (cap: number) => (cap <= 0 ? 0 : Math.max(1, Math.floor(cap * factor)));
      return { backendCap: eff(b.config.maxConcurrency), modelCap: model === '' ? 0 : eff(b.config.modelConcurrency) };
    });
  },
};
