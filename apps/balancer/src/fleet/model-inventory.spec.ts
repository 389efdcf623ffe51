import { startSimServer, SimServer } from '@app/ollama-sim';
import { loadBalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from './backend-registry.service';
import { ModelInventory } from './model-inventory';
import { OllamaClient } from './ollama-client';

describe('ModelInventory.learnCapabilities (/api/show when /api/tags lists none)', () => {
  let sim: SimServer;
  beforeAll(async () => {
    sim = await startSimServer({ port: 0, models: [{ name: 'qwen3:0.6b', sizeBytes: 5e8 }] });
  });
  afterAll(() => sim.close());

  it('asks each backend once per digest, shares concurrent asks, and then knows', async () => {
    const config = loadBalancerConfig({ OLLAMA_BACKENDS: sim.url, HEALTH_TIMEOUT_MS: '2000' });
    const registry = new BackendRegistry(config);
    const client = new OllamaClient(config);
    const inventory = new ModelInventory(config, registry, client);
    const b = registry.backends[0];
    // As an Ollama whose /api/tags predates `capabilities` lists it.
    b.modelsOnDisk.set('qwen3:0.6b', {
      name: 'qwen3:0.6b',
      size: 5e8,
      digest: 'sha256:abc',
      capabilities: null,
      raw: { model: 'qwen3:0.6b' },
    });
    expect(inventory.capabilitiesUnknown('qwen3:0.6b')).toBe(true);
    const before = sim.stats().byRoute['POST /api/show'] ?? 0;
    await Promise.all([inventory.learnCapabilities('qwen3:0.6b'), inventory.learnCapabilities('qwen3:0.6b')]);
    expect(sim.stats().byRoute['POST /api/show'] - before).toBe(1);
    expect(b.capabilitiesOf('qwen3:0.6b')).toEqual(expect.arrayContaining(['completion', 'tools', 'thinking']));
    expect(inventory.capabilitiesUnknown('qwen3:0.6b')).toBe(false);
    await inventory.learnCapabilities('qwen3:0.6b');
    expect(sim.stats().byRoute['POST /api/show'] - before).toBe(1);
    // A model it cannot show stays unknown, without an error.
    b.modelsOnDisk.set('gone:latest', {
      name: 'gone:latest',
      size: 1,
      digest: 'sha256:def',
      capabilities: null,
      raw: {},
    });
    await inventory.learnCapabilities('gone:latest');
    expect(b.capabilitiesOf('gone:latest')).toBeUndefined();
    client.onApplicationShutdown();
  });
});

describe('ModelInventory.applyPs (learning room from /api/ps)', () => {
  const config = loadBalancerConfig({ OLLAMA_BACKENDS: 'http://gpu1:11434' });
  const ps = (...names: string[]) => ({
    status: 200,
    headers: {},
    body: Buffer.from(
      JSON.stringify({
        models: names.map((name) => ({
          name,
          model: name,
          size: 1e9,
          size_vram: 1e9,
          expires_at: new Date(Date.now() + 300_000).toISOString(),
        })),
      }),
    ),
  });
  let client: OllamaClient;
  let inventory: ModelInventory;
  let registry: BackendRegistry;
  beforeEach(() => {
    registry = new BackendRegistry(config);
    client = new OllamaClient(config);
    inventory = new ModelInventory(config, registry, client);
  });
  afterEach(() => client.onApplicationShutdown());

  it('learns the room from an eviction: a resident model gone beside a newcomer', () => {
    const b = registry.backends[0];
    expect(b.config.learnSlots).toBe(true);
    inventory.applyPs(b, ps('beta:latest'));
    expect([b.room, b.roomKnown]).toEqual([1, false]);
    b.noteLoadStarted('alpha:latest', Date.now() + 1000);
    inventory.applyPs(b, ps('alpha:latest'));
    expect([b.room, b.roomKnown]).toEqual([1, true]);
    expect([...b.modelsLoaded.keys()]).toEqual(['alpha:latest']);
  });

  it('tells its eviction listeners which models a load evicted, and only those', () => {
    const b = registry.backends[0];
    const told: [string, string[]][] = [];
    inventory.evictionListeners.push((x, evicted) => told.push([x.name, evicted]));
    inventory.applyPs(b, ps('beta:latest', 'gamma:latest'));
    b.noteLoadStarted('alpha:latest', Date.now() + 1000);
    inventory.applyPs(b, ps('alpha:latest', 'gamma:latest'));
    expect(told).toEqual([[b.name, ['beta:latest']]]);
    // A model a client unloaded, beside a newcomer, was not evicted.
    b.noteUnloaded('gamma:latest');
    b.noteLoadStarted('delta:latest', Date.now() + 1000);
    inventory.applyPs(b, ps('alpha:latest', 'delta:latest'));
    // Nor is one that left with nothing new beside it (its keep_alive ran out).
    inventory.applyPs(b, ps('delta:latest'));
    expect(told).toEqual([[b.name, ['beta:latest']]]);
  });

  it('an unload a client asked for is no eviction: it teaches no room', () => {
    const b = registry.backends[0];
    inventory.applyPs(b, ps('beta:latest'));
    b.noteUnloaded('beta:latest');
    inventory.applyPs(b, ps('alpha:latest'));
    expect(b.roomKnown).toBe(false);
  });

  it('a load sent a while ago and not listed beside resident models was held back: full, and no longer loading', () => {
    const b = registry.backends[0];
    inventory.applyPs(b, ps('beta:latest'));
    const now = Date.now();
    // Just sent: it may still be starting; nothing is concluded.
    b.noteLoadStarted('alpha:latest', now + 2000, now);
    inventory.applyPs(b, ps('beta:latest'));
    expect(b.roomKnown).toBe(false);
    expect(b.loading.has('alpha:latest')).toBe(true);
    // Sent 300 ms ago and still not listed: Ollama holds it back; one model is all the room there is.
    b.loading.set('alpha:latest', { since: now - 300, readyAt: now + 1700 });
    inventory.applyPs(b, ps('beta:latest'));
    expect([b.room, b.roomKnown]).toEqual([1, true]);
    expect(b.loading.has('alpha:latest')).toBe(false);
    expect(b.loadingUntil('alpha:latest')).toBe(0);
  });

  it("keeps a pending load's victim in doubt across /api/ps reads on a full backend until the load is over", () => {
    const b = registry.backends[0];
    inventory.applyPs(b, ps('beta:latest'));
    b.learned.room.observeFull(1);
    b.acquire('beta:latest');
    b.noteLoadStarted('alpha:latest', Date.now() + 2000);
    b.acquire('alpha:latest'); // the request that loads it, waiting at Ollama
    // Still listed (busy, or the load not started yet): still in doubt while alpha's load is pending.
    inventory.applyPs(b, ps('beta:latest'));
    expect(b.maybeEvicted.has('beta:latest')).toBe(true);
    expect(b.isLoaded('beta:latest')).toBe(false);
    // Ollama held the load back (not listed after a while): still pending, still in doubt.
    b.loading.set('alpha:latest', { since: Date.now() - 1000, readyAt: Date.now() + 1000 });
    inventory.applyPs(b, ps('beta:latest'));
    expect(b.loading.has('alpha:latest')).toBe(false);
    expect(b.isLoaded('beta:latest')).toBe(false);
    // Both listed: it fitted after all.
    inventory.applyPs(b, ps('alpha:latest', 'beta:latest'));
    expect(b.maybeEvicted.size).toBe(0);
    expect(b.isLoaded('beta:latest')).toBe(true);
  });

  it('clears the models a cold dispatch may have evicted once /api/ps lists them', () => {
    const b = registry.backends[0];
    inventory.applyPs(b, ps('beta:latest'));
    b.noteLoadStarted('alpha:latest', Date.now() + 2000);
    expect(b.maybeEvicted.has('beta:latest')).toBe(true);
    expect(b.isLoaded('beta:latest')).toBe(false);
    inventory.applyPs(b, ps('beta:latest'));
    expect(b.maybeEvicted.size).toBe(0);
    expect(b.isLoaded('beta:latest')).toBe(true);
  });

  it('forgets the runner options of a runner that is gone', () => {
    const b = registry.backends[0];
    inventory.applyPs(b, ps('alpha:latest'));
    b.runnerOptions.set('alpha:latest', { numCtx: 8192 });
    inventory.applyPs(b, ps('alpha:latest'));
    expect(b.runnerOptions.has('alpha:latest')).toBe(true);
    inventory.applyPs(b, ps());
    expect(b.runnerOptions.has('alpha:latest')).toBe(false);
  });
});
