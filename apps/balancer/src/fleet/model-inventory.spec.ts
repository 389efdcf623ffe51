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
