import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { startSimServer, SimServer } from '@app/ollama-sim';
import { BalancerConfig, loadBalancerConfig } from '../config/balancer-config';
import { loadSharedStateConfig } from '../config/shared-state-config';
import { SharedState } from '../shared-state';
import { RedisProcess } from '../../test/redis-process';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { FleetEvents } from '../fleet/fleet-events';
import { ModelInventory } from '../fleet/model-inventory';
import { OllamaClient } from '../fleet/ollama-client';
import { Lifecycle } from '../lifecycle/lifecycle';
import { FairPlacementQueue } from './fair-placement-queue';
import { Lease, LocalLeaseLedger } from './lease-ledger';
import { Rewarm } from './rewarm';
import { RoutingService } from './routing.service';
import { SharedDemandSync } from './shared-demand-sync';
import { LocalSessionAffinity } from './session-affinity';

const ALPHA = 'alpha:latest';
const BETA = 'beta:latest';
const GAMMA = 'gamma:latest';
const MODELS = [
  { name: ALPHA, sizeBytes: 1_000_000_000 },
  { name: BETA, sizeBytes: 1_000_000_000 },
  { name: GAMMA, sizeBytes: 1_000_000_000 },
];

/**
 * Rewarm: a model a load evicted, still in use and loaded nowhere, is loaded again where it fits
 * beside what is loaded, or where its next request would load it when that server's room is not
 * known; never where a load evicts for sure. Real simulated Ollama servers and the real
 * routing stack and inventory; /api/ps is read from the sims.
 */
describe('Rewarm (an evicted model still in use, loaded again where it fits)', () => {
  let sims: SimServer[] = [];
  let dir: string;
  let client: OllamaClient | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'rewarm-'));
  });
  afterEach(async () => {
    client?.onApplicationShutdown();
    client = undefined;
    await Promise.all(sims.map((s) => s.close()));
    sims = [];
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * `full`: room for one model, alpha loaded; `spare`: alpha and gamma on disk, gamma loaded, room
   * for two (as configured when `spareRoom` says so; else unknown to the balancer).
   */
  async function setup(
    opts: {
      spareRoom?: number;
      env?: Record<string, string>;
      gammaElsewhere?: boolean;
      shared?: SharedState;
      /** `idle`: alpha on disk, nothing loaded (an idle server); room not told. */
      idle?: boolean;
      /** The idle server answers 500 on model routes (its loads fail). */
      idleFails?: boolean;
    } = {},
  ) {
    sims = await Promise.all([
      startSimServer({ port: 0, models: MODELS, loaded: [ALPHA], maxLoadedModels: 1, loadMsPerGB: 50 }),
      startSimServer({ port: 0, models: [MODELS[0], MODELS[2]], loaded: [GAMMA], maxLoadedModels: 2, loadMsPerGB: 50 }),
      // `other`: gamma loaded, room for one, nothing else on disk.
      ...(opts.gammaElsewhere
        ? [startSimServer({ port: 0, models: [MODELS[2]], loaded: [GAMMA], maxLoadedModels: 1, loadMsPerGB: 50 })]
        : []),
      ...(opts.idle
        ? [
            startSimServer({
              port: 0,
              models: [MODELS[0]],
              loaded: [],
              maxLoadedModels: 1,
              loadMsPerGB: 50,
              ...(opts.idleFails ? { faults: { error500: true } } : {}),
            }),
          ]
        : []),
    ]);
    const idleUrl = opts.idle ? sims[sims.length - 1].url : null;
    const file = join(dir, 'balancer.json');
    writeFileSync(
      file,
      JSON.stringify({
        backends: [
          {
            url: sims[1].url,
            name: 'spare',
            ...(opts.spareRoom !== undefined ? { maxLoadedModels: opts.spareRoom } : {}),
          },
          ...(opts.gammaElsewhere ? [{ url: sims[2].url, name: 'other' }] : []),
          ...(idleUrl !== null ? [{ url: idleUrl, name: 'idle' }] : []),
        ],
      }),
    );
    const config = loadBalancerConfig({ OLLAMA_BACKENDS: sims[0].url, BALANCER_CONFIG: file, ...opts.env });
    client = new OllamaClient(config);
    return stack(config, client, opts.shared ?? null);
  }

  /** One balancer's routing stack over the sims (a replica, with `shared` state on Redis). */
  async function stack(config: BalancerConfig, client: OllamaClient, shared: SharedState | null) {
    const registry = new BackendRegistry(config);
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
    const events = new FleetEvents();
    const rewarm = new Rewarm(config, routing, inventory, client, events, shared);
    for (const b of registry.backends) {
      b.health = 'healthy';
      await inventory.refresh(b);
    }
    const full = registry.backends.find((b) => !['spare', 'other', 'idle'].includes(b.name))!;
    const spare = registry.backends.find((b) => b.name === 'spare')!;
    const other = registry.backends.find((b) => b.name === 'other');
    const idle = registry.backends.find((b) => b.name === 'idle');
    /** A request for `model` placed and still running (its lease is returned, to release). */
    const hold = (model: string): Lease => {
      const placed = routing.place({ model, modelSize: 1e9, sessionKey: null, now: Date.now() });
      expect(placed).toBeInstanceOf(Lease);
      return placed as Lease;
    };
    /** A request for `model` through routing (its demand counts), answered at once. */
    const ask = (model: string) => hold(model).release();
    return { config, routing, inventory, rewarm, events, full, spare, other, idle, ask, hold };
  }

  /** Loads beta on `full` directly (as another client of that server would), evicting alpha, and reads /api/ps. */
  async function evictAlpha(inventory: ModelInventory, full: { url: URL } & Parameters<ModelInventory['refresh']>[0]) {
    const r = await fetch(new URL('/api/generate', full.url), {
      method: 'POST',
      body: JSON.stringify({ model: BETA }),
    });
    expect(r.status).toBe(200);
    full.noteLoadStarted(BETA, Date.now());
    await inventory.refresh(full);
    expect(sims[0].stats().loaded).toEqual([BETA]);
  }

  const until = async (what: string, cond: () => boolean) => {
    const deadline = Date.now() + 20_000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  /** Once alpha was evicted: one rewarm started on spare, alpha loaded there beside gamma, nothing else. */
  async function expectRewarmedOnSpare({ rewarm, events, spare }: Awaited<ReturnType<typeof setup>>) {
    expect(rewarm.counters.rewarms.started).toBe(1);
    // Under way: a request for alpha now waits for that load rather than starting another.
    expect(spare.loadingUntil(ALPHA)).toBeGreaterThan(0);
    await until('the rewarm loaded', () => rewarm.counters.rewarms.loaded === 1);
    expect(sims[1].stats().loaded.sort()).toEqual([ALPHA, GAMMA]);
    expect(spare.isLoaded(ALPHA)).toBe(true);
    expect(rewarm.counters.rewarms.failed).toBe(0);
    expect(events.events.map((e) => [e.backend, e.event])).toEqual([[spare.name, 'rewarm']]);
  }

  it('loads alpha where it fits (room known free) once a load evicted it, and never evicts for it', async () => {
    const s = await setup({ spareRoom: 2 });
    s.ask(ALPHA);
    s.ask(ALPHA);
    await evictAlpha(s.inventory, s.full);
    await expectRewarmedOnSpare(s);
  });

  it('starts the rewarm as soon as a load that evicts alpha is sent, even while alpha still answers there', async () => {
    const s = await setup({ spareRoom: 2 });
    s.ask(ALPHA);
    // One alpha request still running on full (room for one model, as /api/ps has shown).
    const running = s.routing.place({ model: ALPHA, modelSize: 1e9, sessionKey: null, now: Date.now() }) as Lease;
    expect(running.backend).toBe(s.full);
    // Beta is on full's disk only: sent there cold, it evicts alpha once alpha's request is done.
    const beta = s.routing.place({ model: BETA, modelSize: 1e9, sessionKey: null, now: Date.now() }) as Lease;
    expect(beta).toBeInstanceOf(Lease);
    expect(beta.backend).toBe(s.full);
    expect(beta.startedLoad).toBe(true);
    // Not after /api/ps shows alpha gone (beta's load time later): now.
    expect(s.rewarm.counters.rewarms.started).toBe(1);
    expect(sims[0].stats().loaded).toEqual([ALPHA]);
    // Alpha still counts as loaded on full while its request runs there, no longer once it is done.
    expect(s.full.isLoaded(ALPHA)).toBe(true);
    running.release();
    expect(s.full.isLoaded(ALPHA)).toBe(false);
    beta.release();
    await expectRewarmedOnSpare(s);
  });

  /** Two replicas' shared state on `redis` (pushed to `replicas`, for the caller to stop), both links up. */
  async function twoReplicas(redis: RedisProcess, replicas: SharedState[]): Promise<void> {
    for (let i = 0; i < 2; i++) {
      const cfg = loadSharedStateConfig({ REDIS_URL: redis.url, REDIS_HEARTBEAT_MS: '200', REDIS_LEASE_MS: '1000' });
      const st = new SharedState({ ...cfg, url: cfg.url! }, () => ({ backendCap: 0, modelCap: 0 }));
      st.start();
      replicas.push(st);
    }
    await until('both links up', () => replicas.every((r) => r.up));
  }

  it('two replicas sharing Redis see the same eviction: one of them rewarms, once', async () => {
    const redis = await RedisProcess.start();
    const replicas: SharedState[] = [];
    try {
      await twoReplicas(redis, replicas);
      const a = await setup({ spareRoom: 2, shared: replicas[0] });
      const b = await stack(a.config, client!, replicas[1]);
      const loadsBefore = sims[1].stats().loads;
      for (const r of [a, b]) {
        r.ask(ALPHA);
        r.ask(ALPHA);
      }
      // Each replica reads /api/ps and sees alpha evicted, in use, loaded nowhere.
      await evictAlpha(a.inventory, a.full);
      b.full.noteLoadStarted(BETA, Date.now());
      await b.inventory.refresh(b.full);
      await until('a rewarm loaded', () => a.rewarm.counters.rewarms.loaded + b.rewarm.counters.rewarms.loaded >= 1);
      await new Promise((r) => setTimeout(r, 300));
      expect(a.rewarm.counters.rewarms.started + b.rewarm.counters.rewarms.started).toBe(1);
      expect(sims[1].stats().loads - loadsBefore).toBe(1);
      expect(sims[1].stats().loaded.sort()).toEqual([ALPHA, GAMMA]);
    } finally {
      for (const r of replicas) await r.stop();
      await redis.stop();
    }
  });

  it("two replicas sharing Redis read the fleet's demand for a model, not each its own share", async () => {
    const redis = await RedisProcess.start();
    const replicas: SharedState[] = [];
    try {
      await twoReplicas(redis, replicas);
      const a = await setup({ shared: replicas[0] });
      const b = await stack(a.config, client!, replicas[1]);
      const syncs = [new SharedDemandSync(a.routing, replicas[0]), new SharedDemandSync(b.routing, replicas[1])];
      // Alpha's requests split between the replicas 3 to 1.
      for (let i = 0; i < 6; i++) a.ask(ALPHA);
      for (let i = 0; i < 2; i++) b.ask(ALPHA);
      const now = Date.now();
      const own = [a.routing.demand.rate(ALPHA, now)!, b.routing.demand.rate(ALPHA, now)!];
      expect(own[0] / own[1]).toBeCloseTo(3, 1);
      for (const s of syncs) await s.exchange();
      await syncs[0].exchange(); // a wrote first: it reads b's on its second turn
      const both = [a.routing.demand.rate(ALPHA, Date.now())!, b.routing.demand.rate(ALPHA, Date.now())!];
      for (const r of both) expect(r / (own[0] + own[1])).toBeCloseTo(1, 1);
      // Redis away: each by its own traffic again.
      await replicas[1].stop();
      await syncs[1].exchange();
      expect(b.routing.demand.rate(ALPHA, Date.now())! / own[1]).toBeCloseTo(1, 1);
    } finally {
      for (const r of replicas) await r.stop();
      await redis.stop();
    }
  });

  it('where the room is not known, starts the load the next request would start (it fits there)', async () => {
    const s = await setup();
    s.ask(ALPHA);
    await evictAlpha(s.inventory, s.full);
    // Alpha is loaded nowhere and still in use: its next request would load it on spare (the only
    // other server with it on disk), which may have room beside gamma. Started now, not by it.
    await expectRewarmedOnSpare(s);
  });

  it('does nothing where the room is known to be full (a load there evicts gamma for sure)', async () => {
    const { inventory, rewarm, full, ask } = await setup({ spareRoom: 1 });
    ask(ALPHA);
    await evictAlpha(inventory, full);
    expect(rewarm.counters.rewarms.started).toBe(0);
    expect(sims[1].stats().loaded).toEqual([GAMMA]);
  });

  it('a decision listener that throws does not fail the placement it was told of', async () => {
    const { routing, full } = await setup({ spareRoom: 2 });
    routing.decisionListeners.unshift(() => {
      throw new Error('listener bug');
    });
    const placed = routing.place({ model: ALPHA, modelSize: 1e9, sessionKey: null, now: Date.now() });
    expect(placed).toBeInstanceOf(Lease);
    expect(full.inFlight).toBe(1);
    (placed as Lease).release();
    expect(full.inFlight).toBe(0);
  });

  it('does nothing for a model nobody asked for, nor with REWARM_EVICTED=false', async () => {
    let s = await setup({ spareRoom: 2 });
    await evictAlpha(s.inventory, s.full);
    expect(s.rewarm.counters.rewarms.started).toBe(0);
    await Promise.all(sims.map((x) => x.close()));
    client?.onApplicationShutdown();
    s = await setup({ spareRoom: 2, env: { REWARM_EVICTED: 'false' } });
    s.ask(ALPHA);
    await evictAlpha(s.inventory, s.full);
    expect(s.rewarm.counters.rewarms.started).toBe(0);
    expect(sims[1].stats().loaded).toEqual([GAMMA]);
  });

  it('loads another copy of a model whose warm holder cannot keep up, where it fits, once', async () => {
    const { routing, rewarm, events, full, spare, ask } = await setup({ spareRoom: 2 });
    // Nothing shown yet about what full serves: no guess.
    for (let i = 0; i < 6; i++) ask(ALPHA);
    expect(rewarm.counters.scaleOuts.started).toBe(0);
    // Full has shown 1.2 s per alpha request on (at most) 2 slots: 1.7 requests/s at best. 6 in
    // the last 3 s are more: another copy goes where it fits.
    full.learned.noteServiceTime(ALPHA, 1200);
    // Overloaded from now on. A burst shorter than the load (1 s here: 1 GB at the default 1 ms per
    // MB) would be over before a copy is ready: the copy waits until the overload has lasted that long.
    const t0 = Date.now();
    expect(routing.scaleOutTarget(ALPHA, t0)).toBeNull();
    expect(routing.scaleOutTarget(ALPHA, t0 + 500)).toBeNull();
    expect(routing.scaleOutTarget(ALPHA, t0 + 1100)?.backend).toBe(spare);
    // A model's need is looked at once per 250 ms at most (from its routing decisions).
    await new Promise((r) => setTimeout(r, 1200 - (Date.now() - t0)));
    ask(ALPHA);
    expect(rewarm.counters.scaleOuts.started).toBe(1);
    expect(spare.loadingUntil(ALPHA)).toBeGreaterThan(0);
    // Under way: no second one, however many more come.
    expect(routing.scaleOutTarget(ALPHA)).toBeNull();
    await until('the copy loaded', () => rewarm.counters.scaleOuts.loaded === 1);
    expect(sims[1].stats().loaded.sort()).toEqual([ALPHA, GAMMA]);
    expect(sims[0].stats().loaded).toEqual([ALPHA]);
    expect(events.events.map((e) => [e.backend, e.event])).toEqual([[spare.name, 'scale-out']]);
    // Two holders now: 3.3 requests/s at best; 7 in 3 s are within that.
    spare.learned.noteServiceTime(ALPHA, 1200);
    expect(routing.scaleOutTarget(ALPHA)).toBeNull();
  });

  it('scale-out: a server that holds nothing gets a copy as soon as the warm holders have no slot free', async () => {
    const { routing, rewarm, events, full, spare, idle, hold } = await setup({ idle: true, spareRoom: 2 });
    expect(idle!.modelsLoaded.size).toBe(0);
    // No overload has lasted, and full's slots are not shown beyond Ollama's default of one. It has
    // shown 200 ms per alpha request: waiting there beats any load, so requests stay there.
    full.learned.noteServiceTime(ALPHA, 200);
    const first = hold(ALPHA);
    expect(first.backend).toBe(full);
    expect(rewarm.counters.scaleOuts.started).toBe(0);
    // The next one waits for that slot (or probes for a second): the idle server loads alpha now,
    // rather than spare, which holds gamma (its room is told, but that is what the overload rule is for).
    await new Promise((r) => setTimeout(r, 300));
    const second = hold(ALPHA);
    expect(second.backend).toBe(full);
    expect(rewarm.counters.scaleOuts.started).toBe(1);
    expect(idle!.loadingUntil(ALPHA)).toBeGreaterThan(0);
    expect(routing.scaleOutTarget(ALPHA)).toBeNull(); // one copy at a time
    await until('the copy loaded', () => rewarm.counters.scaleOuts.loaded === 1);
    expect(sims[sims.length - 1].stats().loaded).toEqual([ALPHA]);
    expect(sims[1].stats().loaded).toEqual([GAMMA]);
    expect(events.events.map((e) => [e.backend, e.event])).toEqual([[idle!.name, 'scale-out']]);
    first.release();
    second.release();
    expect(spare.loadingUntil(ALPHA)).toBe(0);
  });

  it('scale-out: no copy on an idle server while a slot is free, for a model not on its disk, or when off', async () => {
    let s = await setup({ idle: true });
    // One request running on full's one slot, the next not placed yet: nobody waits.
    const lease = s.hold(ALPHA);
    expect(s.routing.scaleOutTarget(ALPHA)).toBeNull();
    lease.release();
    /** Where a copy of `model` would go with two of its requests running. */
    const withTwoRunning = (model: string) => {
      const leases = [s.hold(model), s.hold(model)];
      const target = s.routing.scaleOutTarget(model);
      for (const l of leases) l.release();
      return target;
    };
    // Gamma is loaded on spare only, the idle server does not have it on disk.
    expect(withTwoRunning(GAMMA)).toBeNull();
    expect(s.rewarm.counters.scaleOuts.started).toBe(0);
    await Promise.all(sims.map((x) => x.close()));
    client?.onApplicationShutdown();
    s = await setup({ idle: true, env: { PRELOAD_SATURATED: 'false' } });
    expect(withTwoRunning(ALPHA)).toBeNull();
    expect(s.rewarm.counters.scaleOuts.started).toBe(0);
    expect(sims[sims.length - 1].stats().loaded).toEqual([]);
  });

  it('scale-out: a background load that failed on a server is not tried there again at once', async () => {
    const { rewarm, full, idle, hold } = await setup({ idle: true, idleFails: true });
    full.learned.noteServiceTime(ALPHA, 200);
    const leases = [hold(ALPHA)];
    await new Promise((r) => setTimeout(r, 300));
    leases.push(hold(ALPHA));
    expect(rewarm.counters.scaleOuts.started).toBe(1);
    await until('the load failed', () => rewarm.counters.scaleOuts.failed === 1);
    expect(idle!.loadingUntil(ALPHA)).toBe(0);
    // Still busy, looked at again: not on that server for a minute (it would fail at every look).
    for (let i = 0; i < 2; i++) {
      await new Promise((r) => setTimeout(r, 300));
      leases.shift()!.release();
      leases.push(hold(ALPHA));
    }
    expect(rewarm.counters.scaleOuts.started).toBe(1);
    for (const l of leases) l.release();
  });

  it('scale-out: an overload not looked at for over 5 s starts again', async () => {
    const { routing, full, spare, ask } = await setup({ spareRoom: 2 });
    // 2 slots at 3 s per request: 0.67 requests/s at best; 8 in 3 s are more, and still are 7 s on.
    full.learned.noteServiceTime(ALPHA, 3000);
    for (let i = 0; i < 8; i++) ask(ALPHA);
    const t0 = Date.now();
    expect(routing.scaleOutTarget(ALPHA, t0)).toBeNull();
    // Not looked at for 6 s (no request placed): whether it lasted is not known, so it counts from now.
    expect(routing.scaleOutTarget(ALPHA, t0 + 6000)).toBeNull();
    expect(routing.scaleOutTarget(ALPHA, t0 + 6600)).toBeNull();
    expect(routing.scaleOutTarget(ALPHA, t0 + 7100)?.backend).toBe(spare);
  });

  it('scale-out: nothing where the room is not known, when the holders keep up, or when off', async () => {
    let s = await setup();
    s.full.learned.noteServiceTime(ALPHA, 1000);
    for (let i = 0; i < 8; i++) s.ask(ALPHA);
    expect(s.routing.scaleOutTarget(ALPHA)).toBeNull();
    expect(s.rewarm.counters.scaleOuts.started).toBe(0);
    await Promise.all(sims.map((x) => x.close()));
    client?.onApplicationShutdown();
    s = await setup({ spareRoom: 2 });
    s.full.learned.noteServiceTime(ALPHA, 1000);
    for (let i = 0; i < 5; i++) s.ask(ALPHA);
    expect(s.rewarm.counters.scaleOuts.started).toBe(0);
    await Promise.all(sims.map((x) => x.close()));
    client?.onApplicationShutdown();
    s = await setup({ spareRoom: 2, env: { PRELOAD_SATURATED: 'false' } });
    s.full.learned.noteServiceTime(ALPHA, 1000);
    for (let i = 0; i < 8; i++) s.ask(ALPHA);
    expect(s.routing.scaleOutTarget(ALPHA)).toBeNull();
    expect(s.rewarm.counters.scaleOuts.started).toBe(0);
    expect(sims[1].stats().loaded).toEqual([GAMMA]);
  });

  it("scale-out: where the room is not known, only when the model it may evict is covered by its other holders' shown capacity", async () => {
    // spare's room is not known (gamma loaded there): a load of alpha may fit beside gamma, or evict it.
    let s = await setup({ gammaElsewhere: true });
    s.full.learned.noteServiceTime(ALPHA, 1000);
    // Gamma is asked for (a known demand), and other, which holds it too, has shown 200 ms per
    // gamma request: 5 requests/s at least, more than gamma's demand. Evicting it costs a share of a reload.
    for (let i = 0; i < 3; i++) s.ask(GAMMA);
    s.other!.learned.noteServiceTime(GAMMA, 200);
    for (let i = 0; i < 8; i++) s.ask(ALPHA);
    // Once the overload has lasted as long as the load (1 s) would take.
    const t0 = Date.now();
    expect(s.routing.scaleOutTarget(ALPHA, t0)).toBeNull();
    expect(s.routing.scaleOutTarget(ALPHA, t0 + 600)).toBeNull();
    expect(s.routing.scaleOutTarget(ALPHA, t0 + 1100)?.backend).toBe(s.spare);
    await Promise.all(sims.map((x) => x.close()));
    client?.onApplicationShutdown();
    // Nobody else has shown what it serves of gamma: not covered, no load there.
    s = await setup({ gammaElsewhere: true });
    s.full.learned.noteServiceTime(ALPHA, 1000);
    for (let i = 0; i < 3; i++) s.ask(GAMMA);
    for (let i = 0; i < 8; i++) s.ask(ALPHA);
    const t1 = Date.now();
    expect(s.routing.scaleOutTarget(ALPHA, t1)).toBeNull();
    expect(s.routing.scaleOutTarget(ALPHA, t1 + 600)).toBeNull();
    expect(s.routing.scaleOutTarget(ALPHA, t1 + 1100)).toBeNull();
    expect(s.rewarm.counters.scaleOuts.started).toBe(0);
  });

  it('does nothing when another backend still holds alpha', async () => {
    const { inventory, rewarm, full, spare, ask, routing } = await setup({ spareRoom: 2 });
    ask(ALPHA);
    // Still on full: nothing to do.
    expect(routing.rewarmTarget(ALPHA, full)).toBeNull();
    // As if evicted there, but loaded on spare already, or being loaded there: nothing to do either.
    full.modelsLoaded.delete(ALPHA);
    spare.noteLoaded(ALPHA);
    expect(routing.rewarmTarget(ALPHA, full)).toBeNull();
    spare.modelsLoaded.delete(ALPHA);
    expect(routing.rewarmTarget(ALPHA, full)?.backend).toBe(spare);
    spare.noteLoadStarted(ALPHA, Date.now() + 5000);
    expect(routing.rewarmTarget(ALPHA, full)).toBeNull();
    spare.loading.delete(ALPHA);
    await inventory.refresh(full);
    expect(full.isLoaded(ALPHA)).toBe(true);
    await evictAlpha(inventory, full);
    expect(rewarm.counters.rewarms.started).toBe(1);
    await until('the rewarm loaded', () => rewarm.counters.rewarms.loaded === 1);
  });
});
