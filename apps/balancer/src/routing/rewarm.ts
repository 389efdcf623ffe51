import { Inject, Injectable, Logger } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { Backend, learnLoad } from '../fleet/backend';
import { FleetEvents } from '../fleet/fleet-events';
import { ModelInventory } from '../fleet/model-inventory';
import { OllamaClient } from '../fleet/ollama-client';
import { RoutingService } from './routing.service';

/** Rewarms under way at once, fleet-wide (each is one model on one backend). */
const MAX_REWARMS = 4;

/**
 * Make-before-break, one step late: when /api/ps shows that a load evicted a model that is still in
 * use and is now loaded nowhere, load it again where it fits beside what is loaded (Ollama's
 * load-only request, an empty generate), so that its next requests find it warm instead of each
 * paying for a reload, or queueing behind one, on a server that has to evict again to make room.
 * RoutingService.rewarmTarget decides whether and where; a rewarm never evicts anything. Off with
 * REWARM_EVICTED=false (and with any policy but predictive).
 */
@Injectable()
export class Rewarm {
  private readonly log = new Logger('Rewarm');
  /** Models being rewarmed now (one rewarm per model at a time). */
  private readonly underWay = new Set<string>();
  readonly counters = { started: 0, loaded: 0, failed: 0 };

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly routing: RoutingService,
    private readonly inventory: ModelInventory,
    private readonly client: OllamaClient,
    private readonly events: FleetEvents,
  ) {
    inventory.evictionListeners.push((b, evicted) => {
      for (const model of evicted) this.consider(model, b);
    });
  }

  /** Rewarms `model` (just evicted from `from`) where RoutingService says, if it says so. */
  consider(model: string, from: Backend): void {
    if (this.underWay.has(model) || this.underWay.size >= MAX_REWARMS) return;
    const target = this.routing.rewarmTarget(model, from);
    if (target === null) return;
    void this.load(model, target.backend, target.loadMs, from);
  }

  private async load(model: string, b: Backend, loadMs: number, from: Backend): Promise<void> {
    const started = Date.now();
    this.underWay.add(model);
    this.counters.started++;
    // Under way: requests for it wait for this load there rather than start another elsewhere.
    b.noteLoadStarted(model, started + loadMs, started);
    this.events.note(b, 'rewarm', `loading ${model} (evicted from ${from.name}, in use, loaded nowhere)`);
    try {
      const r = await this.client.backend(b, '/api/generate', {
        method: 'POST',
        body: JSON.stringify({ model: b.modelsOnDisk.get(model)?.raw.model ?? model }),
        headers: { 'content-type': 'application/json' },
        // A load may take as long as a request's first byte may (HEADERS_TIMEOUT_MS).
        timeoutMs: this.config.headersTimeoutMs,
      });
      if (r.status !== 200) throw new Error(`answered ${r.status}: ${r.body.toString('utf8').slice(0, 200)}`);
      b.noteLoaded(model);
      learnLoad(b, model, r.body, Date.now() - started);
      this.counters.loaded++;
    } catch (e) {
      this.counters.failed++;
      // Not under way any more: the next request for it decides afresh.
      b.loading.delete(model);
      this.log.warn(`rewarm of ${model} on ${b.name} failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      this.underWay.delete(model);
      this.inventory.refreshSoon(b);
    }
  }
}
