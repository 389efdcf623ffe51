import { Backend, versionBelow } from './backend';

const mk = () =>
  new Backend({
    name: 'a',
    url: 'http://a:1',
    weight: 1,
    parallel: 2,
    maxConcurrency: 3,
    modelConcurrency: 2,
    maxLoadedModels: 0,
  });

describe('Backend', () => {
  it('counts in-flight per backend and per model exactly', () => {
    const b = mk();
    b.acquire('m:latest');
    b.acquire('m:latest');
    b.acquire('n:latest');
    expect(b.inFlight).toBe(3);
    expect(b.inFlightFor('m:latest')).toBe(2);
    expect(b.atCap('m:latest')).toBe(true); // model cap 2
    expect(b.atCap('x:latest')).toBe(true); // backend cap 3
    b.release('m:latest');
    expect(b.atCap('m:latest')).toBe(false);
    b.release('m:latest');
    b.release('n:latest');
    expect(b.inFlight).toBe(0);
    expect(b.modelInFlight.size).toBe(0);
  });

  it('is unavailable while unhealthy, cordoned or ejected', () => {
    const b = mk();
    expect(b.isAvailable()).toBe(true);
    b.health = 'unhealthy';
    expect(b.isAvailable()).toBe(false);
    b.health = 'healthy';
    b.cordoned = true;
    expect(b.isAvailable()).toBe(false);
    b.cordoned = false;
    b.ejectedUntil = Date.now() + 1000;
    expect(b.isAvailable()).toBe(false);
  });

  it('slow start admits a growing share of its cap after returning', () => {
    const b = mk();
    b.slowStartMs = 10_000;
    b.slowStartFrom = Date.now();
    expect(b.slowStartFactor()).toBeLessThan(0.2);
    b.acquire('m:latest');
    expect(b.atCap('m:latest')).toBe(true); // cap 2 scaled down to 1
    b.slowStartFrom = Date.now() - 20_000;
    expect(b.slowStartFactor()).toBe(1);
    expect(b.atCap('m:latest')).toBe(false);
  });
});

describe('Backend routes and capabilities', () => {
  it('lacks a route its version predates or that it answered 404 page not found, until its version changes', () => {
    const b = mk();
    expect(b.lacksRoute('/v1/messages')).toBe(false);
    b.version = '0.13.5';
    expect(b.lacksRoute('/v1/messages')).toBe(true);
    expect(b.lacksRoute('/v1/responses')).toBe(false);
    b.version = '0.0.0';
    expect(b.lacksRoute('/v1/messages')).toBe(false);
    b.noteRouteMissing('/v1/responses');
    expect(b.lacksRoute('/v1/responses')).toBe(true);
    b.version = '0.0.0';
    expect(b.lacksRoute('/v1/responses')).toBe(true);
    b.version = '0.20.0';
    expect(b.lacksRoute('/v1/responses')).toBe(false);
    expect(versionBelow('v0.12.3-rc1', [0, 13, 3])).toBe(true);
    expect(versionBelow('0.13.3', [0, 13, 3])).toBe(false);
    expect(versionBelow('nightly', [0, 13, 3])).toBe(false);
  });

  it('knows capabilities from /api/tags, else from /api/show per digest', () => {
    const b = mk();
    b.modelsOnDisk.set('m:latest', { name: 'm:latest', size: 1, digest: 'sha256:1', capabilities: null, raw: {} });
    expect(b.canServe('m:latest', ['tools'])).toBeUndefined();
    b.shownCapabilities.set('sha256:1', ['completion', 'tools']);
    expect(b.canServe('m:latest', ['tools'])).toBe(true);
    expect(b.canServe('m:latest', ['tools', 'thinking'])).toBe(false);
    b.modelsOnDisk.set('m:latest', { name: 'm:latest', size: 1, digest: 'sha256:2', capabilities: null, raw: {} });
    expect(b.capabilitiesOf('m:latest')).toBeUndefined();
    b.modelsOnDisk.set('m:latest', {
      name: 'm:latest',
      size: 1,
      digest: 'sha256:2',
      capabilities: ['completion', 'thinking'],
      raw: {},
    });
    expect(b.canServe('m:latest', ['thinking'])).toBe(true);
  });
});
