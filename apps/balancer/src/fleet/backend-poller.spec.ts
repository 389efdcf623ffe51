import { SchedulerRegistry } from '@nestjs/schedule';
import * as http from 'http';
import { AddressInfo } from 'net';
import { loadBalancerConfig } from '../config/balancer-config';
import { BackendPoller } from './backend-poller.service';
import { BackendRegistry } from './backend-registry.service';
import { FleetEvents } from './fleet-events';
import { ModelInventory } from './model-inventory';
import { OllamaClient } from './ollama-client';
import { OutlierDetection } from './outlier-detection';

function setup(threshold = 3, url = 'http://127.0.0.1:1') {
  const config = loadBalancerConfig({
    OLLAMA_BACKENDS: url,
    HEALTH_FAILURE_THRESHOLD: String(threshold),
    HEALTH_TIMEOUT_MS: '300',
    EJECT_CONSECUTIVE_FAILURES: '2',
    EJECT_BASE_MS: '1000',
  });
  const registry = new BackendRegistry(config);
  const events = new FleetEvents();
  const passive = new OutlierDetection(config, registry, events);
  const client = new OllamaClient(config);
  const poller = new BackendPoller(
    config,
    registry,
    new ModelInventory(config, registry, client),
    events,
    client,
    new SchedulerRegistry(),
  );
  return { config, registry, passive, poller, b: registry.backends[0] };
}

describe('backend health state machine', () => {
  it('turns unhealthy only after N consecutive failures and returns on the first success', () => {
    const { poller, b } = setup(3);
    expect(b.health).toBe('unknown');
    poller.markDown(b, 'ECONNREFUSED');
    poller.markDown(b, 'ECONNREFUSED');
    expect(b.health).not.toBe('unhealthy');
    poller.markUp(b); // a success resets the count
    poller.markDown(b, 'x');
    poller.markDown(b, 'x');
    expect(b.health).toBe('healthy');
    poller.markDown(b, 'timeout');
    expect(b.health).toBe('unhealthy');
    expect(b.lastError).toBe('timeout');
    expect(b.isAvailable()).toBe(false);
    poller.markDown(b, 'still down'); // stays polled, stays unhealthy
    expect(b.health).toBe('unhealthy');
    poller.markUp(b);
    expect(b.health).toBe('healthy');
    expect(b.isAvailable()).toBe(true);
    expect(b.slowStartFrom).toBeGreaterThan(0); // eased back in
  });

  it('probes with GET /api/version (never a model load)', async () => {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"version":"0.12.3"}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { poller, b } = setup(1, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      await poller.probe(b);
      expect(b.health).toBe('healthy');
      expect(b.version).toBe('0.12.3');
      expect(seen).toEqual(['GET /api/version']);
    } finally {
      server.close();
    }
  });

  it('a refused probe counts as a failure', async () => {
    const { poller, b } = setup(1, 'http://127.0.0.1:1');
    await poller.probe(b);
    expect(b.health).toBe('unhealthy');
    expect(b.lastError).toMatch(/ECONNREFUSED|connect/);
  });
});

describe('passive health (outlier ejection)', () => {
  it('ejects after consecutive failures with a growing back-off, never all backends', () => {
    const config = loadBalancerConfig({
      OLLAMA_BACKENDS: 'http://a:1,http://b:1',
      EJECT_CONSECUTIVE_FAILURES: '2',
      EJECT_BASE_MS: '1000',
      EJECT_MAX_PERCENT: '100',
    });
    const registry = new BackendRegistry(config);
    const passive = new OutlierDetection(config, registry, new FleetEvents());
    const [a, b] = registry.backends;
    passive.failure(a, '500');
    expect(a.isEjected()).toBe(false);
    passive.failure(a, '500');
    expect(a.isEjected()).toBe(true);
    const first = a.ejectedUntil - Date.now();
    // b fails too, but ejecting it would leave nothing: the cap keeps at least one backend.
    passive.failure(b, '500');
    passive.failure(b, '500');
    expect(b.isEjected()).toBe(false);
    a.ejectedUntil = 0;
    passive.failure(a, '500');
    passive.failure(a, '500');
    expect(a.ejectedUntil - Date.now()).toBeGreaterThan(first * 1.5);
  });
});
