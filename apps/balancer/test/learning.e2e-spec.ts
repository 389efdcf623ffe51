import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { SimConfig, SimServer } from '@app/ollama-sim';
import { INestApplication } from '@nestjs/common';
import { getJson, request, RawResponse, startBalancer, startSims, streamTimed, waitFor } from './harness';

/**
 * Zero-configuration routing (issue 12), end to end: the real balancer in front of simulated Ollama
 * servers that it is told nothing about but their addresses (OLLAMA_BACKENDS only: no parallel, no
 * maxLoadedModels, no BACKEND_PARALLEL). What it must learn, it learns from the servers' answers.
 * No timing thresholds: every wait polls for a state, with generous limits.
 */

const ALPHA = 'alpha:latest';
const BETA = 'beta:latest';
const MODELS = [
  { name: ALPHA, sizeBytes: 2_000_000_000 },
  { name: BETA, sizeBytes: 2_000_000_000 },
];
const TOKEN = 'learning-admin-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };

interface Fleet {
  app: INestApplication;
  url: string;
  sims: SimServer[];
  /** The balancer's name of each sim (host:port, as OLLAMA_BACKENDS names them). */
  names: string[];
  close(): Promise<void>;
}

async function startFleet(
  configs: SimConfig[],
  env: Record<string, string> = {},
  /** Per-backend settings (by index) given in a BALANCER_CONFIG file instead of OLLAMA_BACKENDS. */
  told: Record<number, Record<string, unknown>> = {},
): Promise<Fleet> {
  const sims = await startSims(configs);
  const dir = mkdtempSync(join(tmpdir(), 'learning-'));
  const file = join(dir, 'balancer.json');
  const toldUrls = Object.keys(told).map((i) => sims[Number(i)].url);
  writeFileSync(
    file,
    JSON.stringify({
      backends: Object.entries(told).map(([i, settings]) => ({
        url: sims[Number(i)].url,
        name: `told-${i}`,
        ...settings,
      })),
    }),
  );
  let started: Awaited<ReturnType<typeof startBalancer>>;
  try {
    started = await startBalancer({
      OLLAMA_BACKENDS: sims
        .map((s) => s.url)
        .filter((u) => !toldUrls.includes(u))
        .join(','),
      BALANCER_CONFIG: file,
      ADMIN_TOKEN: TOKEN,
      HEADERS_TIMEOUT_MS: '60000',
      QUEUE_TIMEOUT_MS: '60000',
      ...env,
    });
  } catch (e) {
    await Promise.all(sims.map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const { app, url } = started;
  const fleet: Fleet = {
    app,
    url,
    sims,
    names: sims.map((s, i) => (told[i] !== undefined ? `told-${i}` : new URL(s.url).host)),
    async close() {
      await app.close();
      await Promise.all(sims.map((s) => s.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(
      async () => (await status(fleet)).backends.every((b: any) => b.health === 'healthy' && b.inventoryAt !== null),
      20_000,
      'backends healthy with inventory',
    );
  } catch (e) {
    await fleet.close();
    throw e;
  }
  return fleet;
}

async function status(f: Fleet): Promise<any> {
  const r = await getJson(`${f.url}/balancer/status`, AUTH);
  if (r.status !== 200) throw new Error(`status answered ${r.status}: ${r.text}`);
  return r.body;
}

const backendOf = (st: any, name: string) => st.backends.find((b: any) => b.name === name);

/** Waits until no request is in flight or queued in the balancer (so nothing outlives the test). */
async function idle(f: Fleet): Promise<any> {
  let st: any;
  await waitFor(
    async () => {
      st = await status(f);
      return st.queue.length === 0 && st.backends.every((b: any) => b.inFlight === 0);
    },
    30_000,
    'the balancer idle',
  );
  return st;
}

const generate = (f: Fleet, model: string, extra: Record<string, unknown> = {}): Promise<RawResponse> =>
  request(`${f.url}/api/generate`, {
    // A prompt of 10 tokens: at 100 prompt tokens/s its first token comes 100 ms after it gets a slot.
    body: { model, prompt: 'x'.repeat(40), options: { num_predict: 10 }, ...extra },
  });

describe('zero-configuration routing (OLLAMA_BACKENDS only)', () => {
  let f: Fleet | undefined;
  afterEach(async () => {
    await f?.close();
    f = undefined;
  });

  it('learns each model its slots from concurrent streams: 3 where the server has 3, 1 where it has 1', async () => {
    const sim = { tokensPerSecond: 50, promptTokensPerSecond: 100 };
    f = await startFleet([
      { ...sim, models: [MODELS[0]], loaded: [ALPHA], numParallel: 3 },
      { ...sim, models: [MODELS[1]], loaded: [BETA], numParallel: 1 },
    ]);
    const [three, one] = f.names;
    const before = await status(f);
    for (const name of f.names)
      expect(backendOf(before, name).learned).toMatchObject({ slotsLearned: true, slots: {} });
    expect(backendOf(before, three).parallel).toBe(1); // Ollama's default until shown more
    const learned = async () => {
      const st = await status(f!);
      return [backendOf(st, three).learned.slots[ALPHA], backendOf(st, one).learned.slots[BETA]];
    };
    // Waves of concurrent streams, more than either server runs at once, until both are learned;
    // the estimate never passes the truth on the way (only overlaps proven by first bytes or
    // Ollama's counters count: requests may reach the server out of dispatch order).
    const seen: number[][] = [];
    for (let wave = 0; wave < 8; wave++) {
      const answers = await Promise.all([
        ...Array.from({ length: 8 }, () => generate(f!, ALPHA)),
        ...Array.from({ length: 3 }, () => generate(f!, BETA)),
        ...Array.from({ length: 3 }, async () => {
          await new Promise((r) => setTimeout(r, 150));
          seen.push(await learned());
          return { status: 200 };
        }),
      ]);
      for (const a of answers) expect(a.status).toBe(200);
      const [a, b] = await learned();
      seen.push([a, b]);
      if (a === 3 && b === 1) break;
    }
    for (const [a, b] of seen) {
      expect(a ?? 1).toBeLessThanOrEqual(3);
      expect(b ?? 1).toBeLessThanOrEqual(1);
    }
    expect(await learned()).toEqual([3, 1]);
    // Shown as learned, not configured, once the balancer is idle again.
    const st = await idle(f);
    expect(backendOf(st, three).learned).toMatchObject({ slotsLearned: true, slots: { [ALPHA]: 3 } });
    expect(backendOf(st, one).learned).toMatchObject({ slotsLearned: true, slots: { [BETA]: 1 } });
  });

  it("a burst for a model warm on two servers never evicts the third's warm model", async () => {
    const sim = {
      models: MODELS,
      maxLoadedModels: 1,
      numParallel: 2,
      tokensPerSecond: 100,
      loadMsPerGB: 1000,
    };
    f = await startFleet([
      { ...sim, loaded: [ALPHA] },
      { ...sim, loaded: [ALPHA] },
      { ...sim, loaded: [BETA] },
    ]);
    const third = f.sims[2];
    // No num_predict: the balancer knows nothing of the answers' length (it assumes 3 s each until
    // shown) nor of the load time (2 s for 2 GB by its prior; 2 s here too), so by its priors the
    // queue on the warm two looks long, and only what a warm model is worth keeps alpha off the third.
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        generate(f!, ALPHA, { prompt: `burst ${i}`, stream: i % 2 === 0, options: {} }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array.from({ length: 12 }, () => 200));
    const servedBy = new Set(answers.map((a) => a.headers['x-balancer-backend']));
    expect(servedBy).toEqual(new Set(f.names.slice(0, 2)));
    const s3 = third.stats();
    expect(s3.models[ALPHA].requests).toBe(0);
    expect(s3.loaded).toEqual([BETA]);
    expect(s3.evictions).toBe(0);
    const st = await idle(f);
    expect(backendOf(st, f.names[2]).loaded.map((m: any) => m.name)).toEqual([BETA]);
  });

  it("Ollama's 503 'server busy': answered by another backend, and the busy one is not ejected", async () => {
    f = await startFleet(
      [
        // Alpha warm only on the busy one (the policy's first choice); beta only there at all.
        { models: MODELS, loaded: [ALPHA], tokensPerSecond: 200, faults: { busy503: true } },
        { models: [MODELS[0]], tokensPerSecond: 200, loadMsPerGB: 100 },
        { models: [MODELS[0]], tokensPerSecond: 200, loadMsPerGB: 100 },
      ],
      // One failure would eject: a busy answer must not count as one.
      { EJECT_CONSECUTIVE_FAILURES: '1' },
    );
    const busy = f.names[0];
    for (let i = 0; i < 3; i++) {
      const r = await generate(f, ALPHA, { prompt: `busy ${i}`, stream: false });
      expect(r.status).toBe(200);
      expect(r.headers['x-balancer-backend']).not.toBe(busy);
    }
    expect(f.sims[0].stats().errorsByStatus['503']).toBeGreaterThanOrEqual(1);
    // Beta has nowhere else to go: the client gets Ollama's answer, still no ejection.
    const only = await generate(f, BETA, { stream: false });
    expect(only.status).toBe(503);
    expect(only.body.error).toMatch(/server busy/);
    let st = await idle(f);
    expect(backendOf(st, busy)).toMatchObject({ ejected: false, health: 'healthy', available: true });
    // The same server failing for real (a 500) is ejected at once: the setting is live.
    await f.sims[0].update({ faults: { busy503: false, error500: true } });
    const failed = await generate(f, BETA, { stream: false });
    expect(failed.status).toBe(500);
    st = await idle(f);
    expect(backendOf(st, busy).ejected).toBe(true);
  });

  it('a request whose num_ctx differs from the loaded runner reloads one server, and the next goes there', async () => {
    f = await startFleet([
      { models: [MODELS[0]], loaded: [ALPHA], tokensPerSecond: 200, loadMsPerGB: 200 },
      { models: [MODELS[0]], loaded: [ALPHA], tokensPerSecond: 200, loadMsPerGB: 200 },
    ]);
    // The balancer reads each runner's context from /api/ps (the simulator's default: 32768 here).
    const st0 = await status(f);
    for (const name of f.names) expect(backendOf(st0, name).loaded.map((m: any) => m.name)).toEqual([ALPHA]);
    const reloads = () => f!.sims.map((s) => s.stats().reloads);
    expect(reloads()).toEqual([0, 0]);
    const first = await generate(f, ALPHA, { stream: false, options: { num_ctx: 8192, num_predict: 5 } });
    expect(first.status).toBe(200);
    const chosen = first.headers['x-balancer-backend'] as string;
    const i = f.names.indexOf(chosen);
    expect(i).toBeGreaterThanOrEqual(0);
    expect(reloads()[i]).toBe(1);
    expect(reloads()[1 - i]).toBe(0);
    for (let k = 0; k < 3; k++) {
      const again = await generate(f, ALPHA, { stream: false, options: { num_ctx: 8192, num_predict: 5 } });
      expect(again.status).toBe(200);
      expect(again.headers['x-balancer-backend']).toBe(chosen);
    }
    // A request with the server's defaults goes to the runner still loaded with them.
    const plain = await generate(f, ALPHA, { stream: false, options: { num_predict: 5 } });
    expect(plain.status).toBe(200);
    expect(plain.headers['x-balancer-backend']).toBe(f.names[1 - i]);
    expect(reloads().reduce((a, b) => a + b, 0)).toBe(1);
    await idle(f);
  });
  it('learns load speed only from the request that started the load, not from one that joined it', async () => {
    f = await startFleet([{ models: [MODELS[0]], tokensPerSecond: 200, loadMsPerGB: 2000 }]);
    const sim = f.sims[0];
    const first = generate(f, ALPHA, { stream: false });
    await waitFor(() => sim.stats().models[ALPHA]?.state === 'loading', 30_000, 'the load under way');
    // Join the load about half way (a 4 s load): its load_duration is only the rest of it.
    const started = Date.now();
    await waitFor(
      () => Date.now() - started >= 2000 || sim.stats().models[ALPHA]?.state !== 'loading',
      30_000,
      'mid-load',
    );
    const second = generate(f, ALPHA, { stream: false });
    const [a, b] = await Promise.all([first, second]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(sim.stats().loads).toBe(1);
    const st = await idle(f);
    // One sample: what the first answer's load_duration says per GB (to the status view's rounding).
    const perGB = a.body.load_duration / 1e6 / (MODELS[0].sizeBytes / 1e9);
    expect(Math.abs(backendOf(st, f.names[0]).learned.loadMsPerGB - perGB)).toBeLessThanOrEqual(1);
  });
  it('learns that a server is full from a load it holds back while its one model is busy', async () => {
    f = await startFleet([{ models: MODELS, loaded: [ALPHA], maxLoadedModels: 1, tokensPerSecond: 50 }]);
    const name = f.names[0];
    const room = async () => {
      const l = backendOf(await status(f!), name).learned;
      return [l.maxLoadedModels, l.maxLoadedModelsKnown];
    };
    expect(await room()).toEqual([1, false]); // seen holding one; more may fit
    // A long alpha stream keeps the only resident model busy (cut once the test has seen enough).
    let cut: (() => void) | undefined;
    const long = streamTimed(
      `${f.url}/api/generate`,
      { model: ALPHA, prompt: 'long', options: { num_predict: 5000 } },
      (_c, req) => {
        cut ??= () => req.destroy();
      },
    );
    await waitFor(() => cut !== undefined, 30_000, 'the alpha stream under way');
    // Beta has nowhere else to go: sent cold, Ollama holds its load until alpha is idle.
    const beta = generate(f, BETA, { stream: false });
    await waitFor(async () => (await room())[1] === true, 30_000, 'the room learned');
    expect(await room()).toEqual([1, true]);
    expect(f.sims[0].stats().loaded).toEqual([ALPHA]);
    cut!();
    await long;
    const b = await beta;
    expect(b.status).toBe(200);
    await idle(f);
    expect(f.sims[0].stats().loaded).toEqual([BETA]);
  });

  it('takes a request whose load a full server holds back to another server, once /api/ps shows it held', async () => {
    const GAMMA = 'gamma:latest';
    const GAMMA_MODEL = { name: GAMMA, sizeBytes: 2_000_000_000 };
    // full: room for one model, alpha busy on it. roomy: room for two, gamma busy on it twice (two
    // slots), so that the full one looks a little less busy and is tried first. Neither room is
    // known yet: a load on either may fit.
    f = await startFleet([
      { models: MODELS, loaded: [ALPHA], maxLoadedModels: 1, tokensPerSecond: 50 },
      { models: [MODELS[1], GAMMA_MODEL], loaded: [GAMMA], maxLoadedModels: 2, numParallel: 2, tokensPerSecond: 50 },
    ]);
    const [full, roomy] = f.names;
    const open = new Set<{ destroy(): void }>();
    const busy = (model: string) =>
      streamTimed(`${f!.url}/api/generate`, { model, prompt: 'long', options: { num_predict: 5000 } }, (_c, req) => {
        open.add(req);
      });
    const streams = [busy(ALPHA), busy(GAMMA)];
    await waitFor(async () => open.size === 2, 30_000, 'two streams under way');
    // The second gamma stream once the first has shown roomy's speed (so both are in flight there).
    streams.push(busy(GAMMA));
    await waitFor(async () => open.size === 3, 30_000, 'three streams under way');
    // Beta goes to the full server first (a load that may fit), which holds it back; the balancer
    // sees that in /api/ps and takes the request to the roomy server, where it loads beside gamma.
    const beta = await generate(f, BETA, { stream: false });
    expect(beta.status).toBe(200);
    expect(beta.headers['x-balancer-backend']).toBe(roomy);
    const st = await status(f);
    expect(backendOf(st, full).learned).toMatchObject({ maxLoadedModels: 1, maxLoadedModelsKnown: true });
    // Nothing was started twice: the full server never loaded beta, and still holds alpha.
    expect(f.sims[0].stats().loaded).toEqual([ALPHA]);
    expect(f.sims[1].stats().loaded.sort()).toEqual([BETA, GAMMA].sort());
    for (const r of open) r.destroy();
    await Promise.allSettled(streams);
    await idle(f);
  });

  it('loads a model a load evicted, and that is still in use, where it fits: its next request is warm', async () => {
    const GAMMA = 'gamma:latest';
    // full: room for one model, alpha loaded, beta on disk. spare: alpha and gamma on disk, gamma
    // loaded, room for two (the one thing the balancer is told: a rewarm never gambles on a room).
    f = await startFleet(
      [
        { models: MODELS, loaded: [ALPHA], maxLoadedModels: 1, tokensPerSecond: 50, loadMsPerGB: 100 },
        {
          models: [MODELS[0], { name: GAMMA, sizeBytes: 2_000_000_000 }],
          loaded: [GAMMA],
          maxLoadedModels: 2,
          tokensPerSecond: 50,
          loadMsPerGB: 100,
        },
      ],
      {},
      { 1: { maxLoadedModels: 2 } },
    );
    const [full, spare] = f.names;
    for (let i = 0; i < 3; i++) {
      const r = await generate(f, ALPHA, { prompt: `alpha ${i}`, stream: false });
      expect(r.status).toBe(200);
      expect(r.headers['x-balancer-backend']).toBe(full);
    }
    // Beta is only on full: its load evicts alpha there, and alpha is then loaded nowhere.
    const beta = await generate(f, BETA, { stream: false });
    expect(beta.status).toBe(200);
    expect(f.sims[0].stats().loaded).toEqual([BETA]);
    // The balancer sees the eviction in /api/ps and loads alpha on spare, beside gamma.
    await waitFor(async () => (await status(f!)).counters.rewarms.loaded === 1, 30_000, 'alpha rewarmed');
    expect(f.sims[1].stats().loaded.sort()).toEqual([ALPHA, GAMMA]);
    const st = await status(f);
    expect(st.counters.rewarms).toEqual({ started: 1, loaded: 1, failed: 0 });
    expect(st.events.some((e: any) => e.backend === spare && e.event === 'rewarm')).toBe(true);
    // Alpha's next request finds it warm there: no reload, and nothing evicted for it.
    const next = await generate(f, ALPHA, { prompt: 'alpha again', stream: false });
    expect(next.status).toBe(200);
    expect(next.headers['x-balancer-backend']).toBe(spare);
    expect(next.headers['x-balancer-reason']).toBe('warm');
    expect(f.sims[0].stats().loaded).toEqual([BETA]);
    await idle(f);
  });

  it('loads another copy of a model its one warm server cannot keep up with on an empty server, in the background', async () => {
    // busy: alpha loaded, one slot, 500 ms per answer (25 tokens at 50/s). empty: alpha on disk,
    // nothing loaded (nothing to evict there). Told nothing about either. Alpha is 40 GB here: a
    // load the balancer predicts at 40 s (it loads in 2 s), so that no request of this test would
    // choose to wait for it; only the background load puts it there.
    const big = [{ name: ALPHA, sizeBytes: 40_000_000_000 }];
    f = await startFleet([
      { models: big, loaded: [ALPHA], tokensPerSecond: 50, loadMsPerGB: 50 },
      { models: big, loaded: [], tokensPerSecond: 50, loadMsPerGB: 50 },
    ]);
    const [busy, empty] = f.names;
    // One answer shows busy's service time; then 5 requests a second for 6 s: more than it may
    // serve (2 a second on the one slot it has shown, 4 on the two it may have), for longer than a
    // burst (a copy is loaded once the overload has lasted the load's predicted time, at most 5 s).
    const first = await generate(f, ALPHA, { prompt: 'first', stream: false, options: { num_predict: 25 } });
    expect(first.headers['x-balancer-backend']).toBe(busy);
    const sent: Promise<RawResponse>[] = [];
    for (let i = 0; i < 30; i++) {
      sent.push(generate(f, ALPHA, { prompt: `burst ${i}`, stream: false, options: { num_predict: 25 } }));
      await new Promise((r) => setTimeout(r, 200));
    }
    await waitFor(async () => (await status(f!)).counters.scaleOuts.loaded === 1, 30_000, 'a copy loaded on empty');
    for (const r of await Promise.all(sent)) expect(r.status).toBe(200);
    const st = await idle(f);
    expect(st.counters.scaleOuts).toEqual({ started: 1, loaded: 1, failed: 0 });
    expect(st.events.some((e: any) => e.backend === empty && e.event === 'scale-out')).toBe(true);
    expect(f.sims[1].stats().loaded).toEqual([ALPHA]);
    expect(f.sims[0].stats().loaded).toEqual([ALPHA]);
  });

  /**
   * Opens `streams` (path and body) on the fleet and waits for each server's token rate, which must
   * be learned while every stream still runs (each has most of its time to go); then ends them.
   */
  async function ratesWhileStreaming(streams: [string, Record<string, unknown>][]): Promise<(number | null)[]> {
    let ended = 0;
    const running = new Set<{ destroy(): void }>();
    const opened = streams.map(([path, body]) =>
      streamTimed(`${f!.url}${path}`, body, (_c, req) => running.add(req)).then((r) => {
        ended++;
        return r;
      }),
    );
    let rates: (number | null)[] = [null, null];
    await waitFor(
      async () => {
        const st = await status(f!);
        rates = f!.names.map((n) => backendOf(st, n).learned.tokensPerSecond);
        return rates.every((r) => r !== null);
      },
      15_000,
      'token rates learned from the running streams',
    );
    expect(ended).toBe(0);
    for (const req of running) req.destroy();
    await Promise.all(opened);
    await idle(f!);
    return rates;
  }

  it("reads a server's token rate from a stream's first tokens, before its answer ends (Ollama's and OpenAI's)", async () => {
    // 20 and 40 tokens/s: 400-token answers run 20 and 10 s; their first tokens say how fast each is.
    f = await startFleet([
      { models: [MODELS[0]], loaded: [ALPHA], tokensPerSecond: 20 },
      { models: [MODELS[1]], loaded: [BETA], tokensPerSecond: 40 },
    ]);
    const st0 = await status(f);
    expect(f.names.map((n) => backendOf(st0, n).learned.tokensPerSecond)).toEqual([null, null]);
    const rates = await ratesWhileStreaming([
      ['/api/generate', { model: ALPHA, prompt: 'long', options: { num_predict: 400 } }],
      [
        '/v1/chat/completions',
        { model: BETA, stream: true, max_tokens: 400, messages: [{ role: 'user', content: 'long' }] },
      ],
    ]);
    // Each server's speed, read from its tokens (a loaded machine only makes the sims slower).
    expect(rates[0]).toBeGreaterThan(5);
    expect(rates[0]).toBeLessThanOrEqual(24);
    expect(rates[1]).toBeGreaterThan(10);
    expect(rates[1]).toBeLessThanOrEqual(48);
  });

  it("reads a server's token rate from the first deltas of Anthropic's and Responses' streams too", async () => {
    // Their events interleave deltas with others (message_start, content_block_start, ...): only
    // the deltas are tokens. 20 and 40 tokens/s, 400-token answers (their natural length, under
    // the caps): 20 and 10 s.
    f = await startFleet([
      { models: [MODELS[0]], loaded: [ALPHA], tokensPerSecond: 20, defaultOutputTokens: 400 },
      { models: [MODELS[1]], loaded: [BETA], tokensPerSecond: 40, defaultOutputTokens: 400 },
    ]);
    const rates = await ratesWhileStreaming([
      [
        '/v1/messages?beta=true',
        { model: ALPHA, stream: true, max_tokens: 1000, messages: [{ role: 'user', content: 'long' }] },
      ],
      ['/v1/responses', { model: BETA, stream: true, max_output_tokens: 1000, input: 'long' }],
    ]);
    expect(rates[0]).toBeGreaterThan(5);
    expect(rates[0]).toBeLessThanOrEqual(24);
    expect(rates[1]).toBeGreaterThan(10);
    expect(rates[1]).toBeLessThanOrEqual(48);
  });

  it('learns how long a model answers: num_predict 4000 answered with 20 tokens is routed as a short answer', async () => {
    // The server answers at most 20 tokens whatever the client asks (its maxOutputTokens).
    f = await startFleet([{ models: [MODELS[0]], loaded: [ALPHA], tokensPerSecond: 50, maxOutputTokens: 20 }]);
    expect((await status(f)).learned.outputTokens).toEqual({});
    for (let i = 0; i < 4; i++) {
      const r = await generate(f, ALPHA, { prompt: `short ${i}`, stream: false, options: { num_predict: 4000 } });
      expect(r.status).toBe(200);
      expect(r.body.eval_count).toBe(20);
    }
    const st = await idle(f);
    expect(st.learned.outputTokens).toEqual({ [ALPHA]: 20 });
    const tokensPerSecond = backendOf(st, f.names[0]).learned.tokensPerSecond;
    expect(tokensPerSecond).toBeGreaterThan(0);
    // What waiting behind a 4000-token answer would be predicted to take, at the learned rate.
    const longMs = (4000 / tokensPerSecond) * 1000;

    // One more such request, made to run long here (so that the next is placed while it runs)...
    await f.sims[0].update({ maxOutputTokens: 4096 });
    let cutLong: (() => void) | undefined;
    const long = streamTimed(
      `${f.url}/api/generate`,
      { model: ALPHA, prompt: 'long', options: { num_predict: 4000 } },
      (_c, req) => {
        cutLong ??= () => req.destroy();
      },
    );
    await waitFor(() => cutLong !== undefined, 30_000, 'the long stream under way');
    // ...and the next one waits for its slot (the server has one): the balancer expects the running
    // answer to end about 20 tokens after it began, not 4000, and predicts this one's first token so.
    const next = streamTimed(
      `${f.url}/api/generate`,
      { model: ALPHA, prompt: 'next', options: { num_predict: 4000 } },
      (_c, req) => req.destroy(),
    );
    let decision: any;
    await waitFor(
      async () => {
        const s = await status(f!);
        decision = s.decisions[0];
        return s.counters.routed === 6;
      },
      30_000,
      'the next request placed',
    );
    expect(decision.model).toBe(ALPHA);
    // A prediction, not a measured time: what the balancer believed when it placed the request.
    expect(decision.predictedMs).toBeLessThan(longMs / 4);
    cutLong!();
    await Promise.all([long, next]);
    await idle(f);
  });
});
