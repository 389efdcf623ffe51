import { BackendConfig } from '../config/balancer-config';
import { Backend, BUSY_BACKOFF_MS, optionsForceReload, RunnerOptions, versionBelow } from './backend';

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

const mk4 = () =>
  new Backend({
    name: 'c',
    url: 'http://c:1',
    weight: 1,
    parallel: 4,
    maxConcurrency: 0,
    modelConcurrency: 4,
    maxLoadedModels: 0,
  });
const learning = (over: Partial<BackendConfig> = {}) =>
  new Backend({
    name: 'l',
    url: 'http://l:1',
    weight: 1,
    parallel: 1,
    learnSlots: true,
    maxConcurrency: 0,
    modelConcurrency: over.learnSlots === false ? 1 : 0,
    maxLoadedModels: 0,
    ...over,
  });

function loaded(b: Backend, model: string, raw: Record<string, unknown> = {}): void {
  b.modelsLoaded.set(model, { name: model, size: 1e9, sizeVram: 1e9, expiresAt: Date.now() + 300_000, raw });
}

describe('optionsForceReload (server/sched.go needsReload, as far as the balancer can tell)', () => {
  it.each<[string, RunnerOptions, RunnerOptions, boolean]>([
    ['two defaults: no reload', {}, {}, false],
    ['the same num_ctx: no reload', { numCtx: 4096 }, { numCtx: 4096 }, false],
    ['another num_ctx: reloads', { numCtx: 4096 }, { numCtx: 8192 }, true],
    ['a named num_ctx on a default runner: reloads', {}, { numCtx: 8192 }, true],
    ['the default num_ctx on a runner loaded with a named one: reloads', { numCtx: 8192 }, {}, true],
    ['num_batch 512 is the default: no reload', {}, { numBatch: 512 }, false],
    ['another num_batch: reloads', {}, { numBatch: 1024 }, true],
    ['num_gpu not named never reloads: no reload', { numGpu: 20 }, {}, false],
    ['the same num_gpu: no reload', { numGpu: 20 }, { numGpu: 20 }, false],
    ['another num_gpu: reloads', {}, { numGpu: 0 }, true],
    ['use_mmap named on a default runner: reloads', {}, { useMmap: false }, true],
    ['use_mmap left to the default on a runner loaded with it off: reloads', { useMmap: false }, {}, true],
    ['the same use_mmap: no reload', { useMmap: true }, { useMmap: true }, false],
    ['num_thread 0 is the default: no reload', {}, { numThread: 0 }, false],
    ['another num_thread: reloads', {}, { numThread: 8 }, true],
    ['context shift turned off: reloads', {}, { noShift: true }, true],
    ['context shift off on both: no reload', { noShift: true }, { noShift: true }, false],
    ['context shift back on: reloads', { noShift: true }, {}, true],
  ])('%s', (_what, loadedWith, want, reload) => expect(optionsForceReload(loadedWith, want)).toBe(reload));
});

describe('Backend.forcesReload', () => {
  it('judges by the options this balancer loaded the runner with, else by /api/ps context_length', () => {
    const b = learning();
    expect(b.forcesReload('m:latest', { numCtx: 8192 })).toBe(false); // not loaded, nothing known: no
    loaded(b, 'm:latest', { context_length: 4096 });
    expect(b.forcesReload('m:latest', undefined)).toBe(false);
    expect(b.forcesReload('m:latest', {})).toBe(false); // the default: unknown, so no
    expect(b.forcesReload('m:latest', { numCtx: 4096 })).toBe(false);
    expect(b.forcesReload('m:latest', { numCtx: 8192 })).toBe(true);
    // Options other than num_ctx are not in /api/ps: unknown, so no.
    expect(b.forcesReload('m:latest', { numBatch: 64 })).toBe(false);
    // What the balancer sent the load with wins over /api/ps.
    b.runnerOptions.set('m:latest', { numCtx: 8192 });
    expect(b.forcesReload('m:latest', { numCtx: 8192 })).toBe(false);
    expect(b.forcesReload('m:latest', { numCtx: 4096 })).toBe(true);
    expect(b.forcesReload('m:latest', { numCtx: 8192, numBatch: 64 })).toBe(true);
    // A context length /api/ps did not give (an older Ollama) is unknown.
    loaded(b, 'n:latest', {});
    expect(b.forcesReload('n:latest', { numCtx: 2048 })).toBe(false);
  });
});

describe('Backend.forcesReload of a runner this balancer loaded with the defaults', () => {
  it('compares a named num_ctx with the context /api/ps shows, as Ollama compares the resolved values', () => {
    const b = learning();
    loaded(b, 'm:latest', { context_length: 4096 });
    b.runnerOptions.set('m:latest', {}); // sent cold with no runner options: the server's default (4096 here)
    expect(b.forcesReload('m:latest', {})).toBe(false);
    expect(b.forcesReload('m:latest', { numCtx: 4096 })).toBe(false);
    expect(b.forcesReload('m:latest', { numCtx: 8192 })).toBe(true);
    expect(b.forcesReload('m:latest', { numCtx: 4096, numBatch: 64 })).toBe(true);
    // Without a context length in /api/ps the default is unknown: a named num_ctx counts as a change.
    loaded(b, 'n:latest', {});
    b.runnerOptions.set('n:latest', {});
    expect(b.forcesReload('n:latest', { numCtx: 4096 })).toBe(true);
  });
});

describe('Backend slots: configured, or learned when nobody said', () => {
  it('a modelConcurrency given while learning caps the probe, without being taken for the slots', () => {
    const b = learning({ modelConcurrency: 1 });
    expect(b.slotsFor('m:latest')).toBe(1);
    b.acquire('m:latest');
    // Learning alone would let a second one probe (probeCap 2); the configured cap of 1 wins.
    expect(b.learned.slotLearner('m:latest').probeCap).toBe(2);
    expect(b.atCap('m:latest')).toBe(true);
  });

  it('slotsFor is the configured parallel, whatever was learned', () => {
    const b = mk();
    const l = b.learned.slotLearner('m:latest');
    const s = [l.begin(0), l.begin(1), l.begin(2)];
    s.forEach((x, k) => l.started(x, 10 + k));
    expect(l.estimate).toBe(3);
    expect(b.slotsFor('m:latest')).toBe(2);
    expect(b.slotsFor(null)).toBe(2);
  });

  it("slotsFor is what was proven per model when learning, from Ollama's default of 1", () => {
    const b = learning();
    expect(b.slotsFor('m:latest')).toBe(1);
    const s = [b.learned.beginSlot('m:latest', 0), b.learned.beginSlot('m:latest', 1)];
    b.learned.startedSlot('m:latest', s[0]);
    b.learned.startedSlot('m:latest', s[1]);
    expect(b.slotsFor('m:latest')).toBe(2);
    expect(b.slotsFor('n:latest')).toBe(1);
    expect(b.slotsFor(null)).toBe(1);
  });

  it('holds back every request for a model while the balancer loads it in the background, and none for a load a request started', () => {
    const now = Date.now();
    for (const b of [mk4(), learning()]) {
      // Started by a request: its riders go up to the cap, as for a loaded model.
      b.noteLoadStarted('m:latest', now + 5000, now);
      b.acquire('m:latest');
      expect(b.atCap('m:latest')).toBe(false);
      b.release('m:latest');
      b.noteLoaded('m:latest');
      // Started in the background: nobody rides it, other models are not held.
      b.noteLoadStarted('n:latest', now + 5000, now, true);
      expect(b.atCap('n:latest')).toBe(true);
      expect(b.atCap('o:latest')).toBe(false);
      b.noteLoaded('n:latest');
      expect(b.atCap('n:latest')).toBe(false);
      b.noteLoadStarted('o:latest', now + 5000, now, true);
      b.loading.delete('o:latest'); // it failed
      expect(b.atCap('o:latest')).toBe(false);
    }
  });

  it('expects a load past its expected end to take as long again as it has overrun, until /api/ps lists it', () => {
    const b = mk();
    const now = Date.now();
    b.noteLoadStarted('m:latest', now + 1000, now - 2000);
    expect(b.loadingUntil('m:latest', now)).toBe(now + 1000);
    expect(b.loadingUntil('m:latest', now + 3000)).toBe(now + 5000);
    b.modelsLoaded.set('m:latest', { name: 'm:latest', size: 1, sizeVram: 1, expiresAt: null, raw: {} });
    expect(b.loadingUntil('m:latest', now + 3000)).toBe(now + 1000);
    // Never confirmed a minute past its end: forgotten.
    expect(b.loadingUntil('m:latest', now + 62_000)).toBe(0);
  });

  it('atCap lets one request beyond the proven slots in flight only when learning', () => {
    const told = learning({ learnSlots: false });
    const learns = learning();
    for (const b of [told, learns]) b.acquire('m:latest');
    expect(told.atCap('m:latest')).toBe(true); // modelConcurrency 1
    expect(learns.atCap('m:latest')).toBe(false); // probeCap 2: room to show a second slot
    learns.acquire('m:latest');
    expect(learns.atCap('m:latest')).toBe(true);
    // Once two are proven, a third may probe.
    const l = learns.learned.slotLearner('m:latest');
    const s = [l.begin(0), l.begin(1)];
    l.started(s[0], 5);
    l.started(s[1], 6);
    expect(learns.atCap('m:latest')).toBe(false);
    // A proven ceiling of 2 closes the probe again.
    const q = l.begin(2);
    l.finish({ sample: q, queueWaitMs: 900, runMs: 1000 }, 2000);
    expect(l.probeCap).toBe(2);
    expect(learns.atCap('m:latest')).toBe(true);
  });
});

describe('Backend loads, evictions and busy backoff', () => {
  it('a cold dispatch marks the load and its likely victim (the idle least recently used) as uncertain', () => {
    const b = learning();
    const now = Date.now();
    loaded(b, 'beta:latest');
    loaded(b, 'gamma:latest');
    b.learned.room.observeFull(2); // room for two, both taken
    b.modelLastUsed.set('beta:latest', now - 5000);
    b.modelLastUsed.set('gamma:latest', now - 60_000);
    b.acquire('gamma:latest'); // busy: Ollama never evicts it
    b.noteLoadStarted('alpha:latest', now + 2000, now);
    expect(b.loadingUntil('alpha:latest', now)).toBe(now + 2000);
    expect([...b.maybeEvicted]).toEqual([['beta:latest', 'alpha:latest']]);
    expect(b.isLoaded('beta:latest', now)).toBe(false);
    expect(b.isLoaded('gamma:latest', now)).toBe(true);
    // A second cold dispatch of the same model does not restart the mark.
    b.noteLoadStarted('alpha:latest', now + 9000, now + 100);
    expect(b.loadingUntil('alpha:latest', now)).toBe(now + 2000);
    // Its answer confirms it; a load never confirmed is forgotten a minute after it was due.
    b.noteLoaded('alpha:latest');
    expect(b.loadingUntil('alpha:latest', now)).toBe(0);
    b.noteLoadStarted('delta:latest', now + 1000, now);
    expect(b.loadingUntil('delta:latest', now + 61_001)).toBe(0);
    expect(b.loading.has('delta:latest')).toBe(false);
  });

  it('a busy victim of a load pending on a full backend is not warm for new requests until /api/ps says', () => {
    const b = learning();
    const now = Date.now();
    loaded(b, 'beta:latest');
    b.learned.room.observeFull(1); // room for one, known
    b.acquire('beta:latest');
    // Every resident is busy: Ollama evicts beta once it is idle. A beta request sent meanwhile may
    // find it gone (then waits for alpha's load and a reload), or keeps it busy and alpha waiting.
    expect(b.noteLoadStarted('alpha:latest', now + 2000, now)).toBe('beta:latest');
    expect(b.isLoaded('beta:latest', now)).toBe(false);
    // Beta's running request answers: that says nothing of the load still pending.
    b.release('beta:latest');
    b.noteLoaded('beta:latest');
    expect(b.maybeEvicted.get('beta:latest')).toBe('alpha:latest');
    expect(b.isLoaded('beta:latest', now)).toBe(false);
    // Alpha answered (its load is over): beta, idle, stays in doubt until /api/ps lists it.
    b.noteLoaded('alpha:latest');
    expect(b.isLoaded('beta:latest', now)).toBe(false);
    // Its own answer now clears the doubt (it is resident after all).
    b.noteLoaded('beta:latest');
    expect(b.isLoaded('beta:latest', now)).toBe(true);
  });

  it('a pending load never confirmed stops holding its victim a minute after it was due', () => {
    const b = learning();
    const now = Date.now();
    loaded(b, 'beta:latest');
    b.learned.room.observeFull(1);
    b.acquire('beta:latest');
    b.noteLoadStarted('alpha:latest', now - 61_000, now - 62_000); // its answer never came
    expect(b.isLoaded('beta:latest', now)).toBe(true);
    expect(b.loading.has('alpha:latest')).toBe(false);
  });

  it('where the room is only a lower bound a busy victim stays warm (the load may fit beside it)', () => {
    const b = learning();
    const now = Date.now();
    loaded(b, 'beta:latest');
    b.learned.room.observe(1); // seen holding one; more may fit
    b.acquire('beta:latest');
    expect(b.noteLoadStarted('alpha:latest', now + 2000, now)).toBe('beta:latest');
    expect(b.isLoaded('beta:latest', now)).toBe(true);
    b.release('beta:latest');
    expect(b.isLoaded('beta:latest', now)).toBe(false); // idle: in doubt, as before
  });

  it('a load into free room marks no victim', () => {
    const b = learning({ maxLoadedModels: 2 });
    loaded(b, 'beta:latest');
    b.noteLoadStarted('alpha:latest', Date.now() + 1000);
    expect(b.maybeEvicted.size).toBe(0);
    expect(b.isLoaded('beta:latest')).toBe(true);
  });

  it("noteBusy passes it over for BUSY_BACKOFF_MS (Ollama's 'server busy')", () => {
    const b = learning();
    b.noteBusy(1000);
    expect(b.busyUntil).toBe(1000 + BUSY_BACKOFF_MS);
    expect(b.isAvailable()).toBe(true); // backed off, not out
  });

  it('room is configured, else learned; known once configured or proven', () => {
    const told = learning({ maxLoadedModels: 3 });
    expect([told.room, told.roomKnown]).toEqual([3, true]);
    const b = learning();
    expect([b.room, b.roomKnown]).toEqual([1, false]);
    b.learned.room.observe(2);
    expect([b.room, b.roomKnown]).toEqual([2, false]);
    b.learned.room.observeLoad(['a', 'b'], ['b', 'c'], 'c');
    expect([b.room, b.roomKnown]).toEqual([2, true]);
  });
});
