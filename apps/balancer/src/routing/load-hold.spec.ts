import { startSimServer, SimServer } from '@app/ollama-sim';
import { loadBalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { ModelInventory } from '../fleet/model-inventory';
import { OllamaClient } from '../fleet/ollama-client';
import { Lifecycle } from '../lifecycle/lifecycle';
import { FairPlacementQueue } from './fair-placement-queue';
import { Lease, LocalLeaseLedger } from './lease-ledger';
import { NoCandidate } from './placement';
import { QueuedRequest } from './placement-queue';
import { RoutingService } from './routing.service';
import { LocalSessionAffinity } from './session-affinity';

const ALPHA = 'alpha:latest';

/**
 * What the balancer holds back while a model loads, and when it lets it go: a load is seen done at
 * the first good byte, and a background load's end offers the queue its server at once. Real
 * simulated Ollama server, the real routing stack, its queue and ledger.
 */
describe('requests queued while a model loads', () => {
  let sim: SimServer;
  let client: OllamaClient;
  afterEach(async () => {
    client.onApplicationShutdown();
    await sim.close();
  });

  async function setup() {
    sim = await startSimServer({ port: 0, models: [{ name: ALPHA, sizeBytes: 1_000_000_000 }], loaded: [] });
    const config = loadBalancerConfig({ OLLAMA_BACKENDS: sim.url, QUEUE_TIMEOUT_MS: '20000' });
    const registry = new BackendRegistry(config);
    client = new OllamaClient(config);
    const inventory = new ModelInventory(config, registry, client);
    const routing = new RoutingService(
      config,
      registry,
      new LocalLeaseLedger(registry),
      new FairPlacementQueue(config),
      new LocalSessionAffinity(),
      new Lifecycle(),
      inventory,
    );
    const b = registry.backends[0];
    b.health = 'healthy';
    await inventory.refresh(b);
    const route = () => ({ model: ALPHA, modelSize: 1e9, sessionKey: null, now: Date.now() });
    /** Places a request; when it must wait, queues it and records how it is told. */
    const ask = () => {
      const told: { lease?: Lease; refused?: NoCandidate } = {};
      const placed = routing.place(route());
      if (placed instanceof Lease) told.lease = placed;
      else if (placed.kind === 'wait') {
        const entry: QueuedRequest = {
          route: route(),
          tried: new Set(),
          onPlaced: (lease) => (told.lease = lease),
          onRefused: (refusal) => (told.refused = refusal),
        };
        expect(routing.enqueue(entry)).toBeNull();
      } else told.refused = placed;
      return told;
    };
    const settle = () => new Promise((r) => setImmediate(r));
    return { routing, b, ask, settle };
  }

  it('marks a load done at its first good byte (not at its end), and takes riders up to the cap while it runs', async () => {
    const { b, ask, settle } = await setup();
    // Slots not known: the starter and one probe go (they start together once it is loaded); the
    // third waits in the balancer.
    const [starter, probe, third] = [ask(), ask(), ask()];
    expect(starter.lease?.startedLoad).toBe(true);
    expect(probe.lease?.backend).toBe(b);
    expect(probe.lease?.startedLoad).toBe(false);
    await settle();
    expect(third.lease ?? third.refused).toBeUndefined();
    // An error's first byte says nothing about the load.
    starter.lease!.firstByte(false);
    expect(b.loading.has(ALPHA)).toBe(true);
    starter.lease!.firstByte(true);
    expect(b.loading.has(ALPHA)).toBe(false);
    expect(b.isLoaded(ALPHA)).toBe(true);
    // Still at the cap: the third goes when a request ends.
    expect(third.lease).toBeUndefined();
    starter.lease!.release();
    expect(third.lease?.backend).toBe(b);
    for (const t of [probe, third]) t.lease!.release();
    expect(b.inFlightFor(ALPHA)).toBe(0);
  });

  it('holds every request for a model the balancer is loading in the background, and places them when that load ends', async () => {
    const { routing, b, ask, settle } = await setup();
    b.noteLoadStarted(ALPHA, Date.now() + 2000, Date.now(), true);
    const held = [ask(), ask()];
    await settle();
    expect(held.map((h) => h.lease ?? h.refused)).toEqual([undefined, undefined]);
    b.noteLoaded(ALPHA);
    routing.loadSettled();
    expect(held[0].lease?.backend).toBe(b);
    expect(held[0].lease?.startedLoad).toBe(false);
    expect(held[1].lease?.backend).toBe(b); // the probe cap: one beyond the slot assumed
    for (const h of held) h.lease!.release();
    expect(b.inFlightFor(ALPHA)).toBe(0);
  });
});
