import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { Cluster, getJson, request, sleep, startCluster, waitFor } from './harness';

const LLAMA = { name: 'llama3.2:latest', sizeBytes: 2_000_000_000 };
const QWEN = { name: 'qwen2.5:7b', sizeBytes: 4_700_000_000 };
const EMBED = { name: 'nomic-embed-text:latest', sizeBytes: 274_000_000, embedding: true };
const status = async (c: Cluster) =>
  (await getJson(`${c.url}/balancer/status`, { authorization: 'Bearer test-admin-token-123' })).body;

describe('model-aware routing', () => {
  let c: Cluster;
  afterEach(async () => {
    await c?.close();
  });

  it('sends every request for a model to the only backend that has it, and 404s an unknown model', async () => {
    c = await startCluster(
      [
        { models: [LLAMA], tokensPerSecond: 2000 },
        { models: [QWEN], tokensPerSecond: 2000 },
        { models: [LLAMA, EMBED], tokensPerSecond: 2000 },
      ],
      { ROUTING_POLICY: 'round-robin' },
    );
    for (let i = 0; i < 5; i++) {
      const r = await request(`${c.url}/api/generate`, {
        body: { model: 'qwen2.5:7b', prompt: `q${i}`, stream: false },
      });
      expect(r.status).toBe(200);
      expect(r.headers['x-balancer-backend']).toBe('b2');
      const e = await request(`${c.url}/api/embed`, { body: { model: 'nomic-embed-text', input: ['a', 'b'] } });
      expect(e.status).toBe(200);
      expect(e.body.embeddings).toHaveLength(2);
      expect(e.headers['x-balancer-backend']).toBe('b3');
    }
    const missing = await request(`${c.url}/api/chat`, {
      body: { model: 'mistral', messages: [{ role: 'user', content: 'x' }] },
    });
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ error: "model 'mistral' not found" });
    const missingOpenAi = await request(`${c.url}/v1/chat/completions`, {
      body: { model: 'mistral', messages: [{ role: 'user', content: 'x' }] },
    });
    expect(missingOpenAi.status).toBe(404);
    expect(missingOpenAi.body.error).toMatchObject({ message: "model 'mistral' not found", type: 'not_found_error' });
  });

  /**
   * b1 is slow and has the model loaded; b2 is fast with the model on disk only. With b1 busy, the
   * predictive policy compares waiting for b1 with loading on b2, using the load speed it learned
   * from a preload on b2. Cheap loads: it cold-loads on b2. Expensive loads: it waits for warm b1.
   */
  it.each([
    ['cheap load -> cold-load on the fast idle backend', 50, 'b2', 'cold-load'],
    ['expensive load -> wait for the warm backend', 2500, 'b1', 'warm'],
  ])('%s', async (_title, loadMsPerGB, expectBackend, expectReason) => {
    c = await startCluster(
      [
        { models: [LLAMA], loaded: ['llama3.2:latest'], tokensPerSecond: 20, numParallel: 1 },
        { models: [LLAMA], tokensPerSecond: 400, numParallel: 1, loadMsPerGB },
      ],
      { ROUTING_POLICY: 'predictive', HEADERS_TIMEOUT_MS: '60000', ADMIN_TOKEN: 'test-admin-token-123' },
      [{ parallel: 1 }, { parallel: 1 }],
    );
    // Learn b1's service time (~1 s for 20 tokens at 20/s) and b2's load speed (a preload there).
    const warmup = await request(`${c.url}/api/generate`, {
      body: { model: 'llama3.2', prompt: 'learn', stream: false, options: { num_predict: 20 } },
    });
    expect(warmup.headers['x-balancer-backend']).toBe('b1');
    const pre = await request(`${c.url}/api/generate`, {
      body: { model: 'llama3.2' },
      headers: { 'x-balancer-backends': 'b2' },
    });
    expect(pre.status).toBe(200);
    expect(pre.body.done_reason).toBe('load');
    expect(c.sims[1].unload('llama3.2:latest')).toBe(true);
    await waitFor(async () => (await status(c)).backends[1].loaded.length === 0, 5000, 'b2 seen unloaded');
    // Occupy b1's only slot with a long request (b2 cordoned meanwhile, so it cannot go there).
    const admin = { authorization: 'Bearer test-admin-token-123' };
    expect(
      (await request(`${c.url}/balancer/admin/backends/b2/cordon`, { method: 'POST', headers: admin })).status,
    ).toBe(200);
    const long = request(`${c.url}/api/generate`, {
      body: { model: 'llama3.2', prompt: 'long', stream: false, options: { num_predict: 20 } },
    });
    await waitFor(async () => (await status(c)).backends[0].inFlight === 1, 5000, 'b1 busy');
    expect(
      (await request(`${c.url}/balancer/admin/backends/b2/uncordon`, { method: 'POST', headers: admin })).status,
    ).toBe(200);
    const r = await request(`${c.url}/api/generate`, {
      body: { model: 'llama3.2', prompt: 'decide', stream: false, options: { num_predict: 5 } },
    });
    expect(r.status).toBe(200);
    const st = await status(c);
    expect({
      backend: r.headers['x-balancer-backend'],
      predicted: r.headers['x-balancer-predicted-ms'],
      learned: st.backends.map((b: any) => b.learned),
    }).toMatchObject({ backend: expectBackend });
    expect(r.headers['x-balancer-reason']).toBe(expectReason);
    if (expectBackend === 'b1') expect(Number(r.headers['x-balancer-queue-ms'])).toBeGreaterThan(0);
    else expect(r.body.load_duration).toBeGreaterThan(50e6);
    expect((await long).status).toBe(200);
  });

  it('queues a burst larger than all slots and drains it in arrival order', async () => {
    c = await startCluster(
      [{ models: [LLAMA], loaded: ['llama3.2:latest'], tokensPerSecond: 50, numParallel: 1 }],
      { ROUTING_POLICY: 'least-connections' },
      [{ parallel: 1 }],
    );
    const order: number[] = [];
    const started: Promise<void>[] = [];
    for (let i = 0; i < 5; i++) {
      started.push(
        request(`${c.url}/api/generate`, {
          body: { model: 'llama3.2', prompt: `burst ${i}`, stream: false, options: { num_predict: 5 } },
        }).then((r) => {
          expect(r.status).toBe(200);
          order.push(i);
        }),
      );
      await sleep(30); // distinct arrival times
    }
    await waitFor(async () => (await status(c)).queue.length >= 3, 5000, 'requests queued in the balancer');
    expect(c.sims[0].stats().active).toBeLessThanOrEqual(1); // never piled onto the server
    await Promise.all(started);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    const st = await status(c);
    expect(st.queue.length).toBe(0);
    expect(st.backends[0].inFlight).toBe(0);
  });

  it('keeps a conversation on one backend, and moves it when that backend dies', async () => {
    c = await startCluster(
      [
        { models: [LLAMA], loaded: ['llama3.2:latest'], tokensPerSecond: 2000 },
        { models: [LLAMA], loaded: ['llama3.2:latest'], tokensPerSecond: 2000 },
        { models: [LLAMA], loaded: ['llama3.2:latest'], tokensPerSecond: 2000 },
      ],
      { ROUTING_POLICY: 'predictive' },
    );
    const convo = (turn: number) => ({
      model: 'llama3.2',
      stream: false,
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Tell me about GPUs.' },
        ...Array.from({ length: turn }, (_, i) => [
          { role: 'assistant', content: `answer ${i}` },
          { role: 'user', content: `follow-up ${i}` },
        ]).flat(),
      ],
    });
    const first = await request(`${c.url}/api/chat`, { body: convo(0) });
    const pinned = String(first.headers['x-balancer-backend']);
    // Other traffic in between must not move it.
    for (let i = 0; i < 3; i++)
      await request(`${c.url}/api/chat`, {
        body: { model: 'llama3.2', stream: false, messages: [{ role: 'user', content: `other ${i}` }] },
      });
    for (let t = 1; t <= 3; t++) {
      const r = await request(`${c.url}/api/chat`, { body: convo(t) });
      expect(r.headers['x-balancer-backend']).toBe(pinned);
    }
    // An explicit session header pins too.
    const h = { 'x-session-id': 'abc' };
    const s1 = String(
      (
        await request(`${c.url}/api/chat`, {
          body: { model: 'llama3.2', stream: false, messages: [{ role: 'user', content: 'one' }] },
          headers: h,
        })
      ).headers['x-balancer-backend'],
    );
    const s2 = String(
      (
        await request(`${c.url}/api/chat`, {
          body: { model: 'llama3.2', stream: false, messages: [{ role: 'user', content: 'two' }] },
          headers: h,
        })
      ).headers['x-balancer-backend'],
    );
    expect(s2).toBe(s1);
    // The pinned backend dies: the conversation moves and stays on its new home.
    const idx = Number(pinned.slice(1)) - 1;
    await c.sims[idx].update({ faults: { refuseConnections: true } });
    await waitFor(
      async () => (await status(c)).backends[idx].health === 'unhealthy',
      10_000,
      'pinned backend unhealthy',
    );
    const moved = String((await request(`${c.url}/api/chat`, { body: convo(4) })).headers['x-balancer-backend']);
    expect(moved).not.toBe(pinned);
    const again = String((await request(`${c.url}/api/chat`, { body: convo(5) })).headers['x-balancer-backend']);
    expect(again).toBe(moved);
  });
});

describe('the whole API through one endpoint', () => {
  let c: Cluster;
  beforeEach(async () => {
    c = await startCluster([
      { models: [LLAMA, EMBED], loaded: ['llama3.2:latest'], tokensPerSecond: 2000, pullMs: 200 },
      { models: [QWEN], loaded: ['qwen2.5:7b'], tokensPerSecond: 2000, pullMs: 200 },
      { models: [LLAMA], tokensPerSecond: 2000, pullMs: 200, unpullable: ['broken:1b'] },
    ]);
  });
  afterEach(async () => {
    await c.close();
  });

  it('merges /api/tags, /v1/models and /api/ps exactly', async () => {
    const tags = await getJson(`${c.url}/api/tags`);
    expect(tags.body.models.map((m: any) => m.name).sort()).toEqual([
      'llama3.2:latest',
      'nomic-embed-text:latest',
      'qwen2.5:7b',
    ]);
    expect(tags.body.models.find((m: any) => m.name === 'qwen2.5:7b').size).toBe(4_700_000_000);
    const models = await getJson(`${c.url}/v1/models`);
    expect(models.body.object).toBe('list');
    expect(models.body.data.map((m: any) => m.id).sort()).toEqual([
      'llama3.2:latest',
      'nomic-embed-text:latest',
      'qwen2.5:7b',
    ]);
    expect(models.body.data[0]).toMatchObject({ object: 'model', owned_by: 'library' });
    const one = await getJson(`${c.url}/v1/models/qwen2.5:7b`);
    expect(one.body).toMatchObject({ id: 'qwen2.5:7b', object: 'model', owned_by: 'library' });
    // Ollama's retrieve echoes the name asked for, untagged included.
    expect((await getJson(`${c.url}/v1/models/llama3.2`)).body).toMatchObject({
      id: 'llama3.2',
      object: 'model',
      owned_by: 'library',
    });
    const missing = await getJson(`${c.url}/v1/models/nope`);
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ message: "model 'nope' not found", type: 'not_found_error' });
    const ps = await getJson(`${c.url}/api/ps`);
    expect(ps.body.models.map((m: any) => `${m.name}@${m.backend}`).sort()).toEqual([
      'llama3.2:latest@b1',
      'qwen2.5:7b@b2',
    ]);
    const v = await getJson(`${c.url}/api/version`);
    expect(v.body.version).toMatch(/^\d+\.\d+\.\d+/);
    const show = await request(`${c.url}/api/show`, { body: { model: 'qwen2.5:7b' } });
    expect(show.status).toBe(200);
    expect(show.headers['x-balancer-backend']).toBe('b2');
  });

  it('fans a pull out to every backend with one progress view ending in success', async () => {
    const r = await request(`${c.url}/api/pull`, { body: { model: 'mistral:7b' } });
    expect(r.status).toBe(200);
    const lines = r.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[lines.length - 1]).toEqual({ status: 'success' });
    expect(lines.some((l) => typeof l.digest === 'string' && l.total > 0)).toBe(true);
    expect(c.sims.map((s) => s.stats().pulls)).toEqual([1, 1, 1]);
    const tags = await getJson(`${c.url}/api/tags`);
    expect(tags.body.models.map((m: any) => m.name)).toContain('mistral:7b');
    // Every backend's inventory knows it at once, so any of them can be routed to.
    const st = await status(c);
    expect(st.backends.every((b: any) => b.models.includes('mistral:7b'))).toBe(true);
    const gen = await request(`${c.url}/api/generate`, { body: { model: 'mistral:7b', prompt: 'x', stream: false } });
    expect(gen.status).toBe(200);
  });

  it('reports the backend that failed a pull, by name', async () => {
    const r = await request(`${c.url}/api/pull`, { body: { model: 'broken:1b' } });
    const lines = r.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const last = lines[lines.length - 1];
    expect(last.status).toBeUndefined();
    expect(last.error).toMatch(/b3/);
    expect(last.error).toMatch(/succeeded on b1, b2/);
    const nonStream = await request(`${c.url}/api/pull`, { body: { model: 'broken:1b', stream: false } });
    expect(nonStream.status).toBe(500);
    expect(nonStream.body.error).toMatch(/b3/);
    // Only the named backends, when asked.
    const only = await request(`${c.url}/api/pull`, {
      body: { model: 'phi3:mini', stream: false },
      headers: { 'x-balancer-backends': 'b2' },
    });
    expect(only.body).toEqual({ status: 'success' });
    expect(c.sims.map((s) => s.stats().pulls)).toEqual([2, 3, 2]);
    const unknown = await request(`${c.url}/api/pull`, {
      body: { model: 'phi3:mini' },
      headers: { 'x-balancer-backends': 'http://evil:1' },
    });
    expect(unknown.status).toBe(400);
  });

  it('deletes and copies across the backends holding a model', async () => {
    const cp = await request(`${c.url}/api/copy`, { body: { source: 'llama3.2', destination: 'my-llama' } });
    expect(cp.text).toBe('');
    expect(cp.status).toBe(200);
    expect(String(cp.headers['x-balancer-backends']).split(',').sort()).toEqual(['b1', 'b3']);
    let names = (await getJson(`${c.url}/api/tags`)).body.models.map((m: any) => m.name);
    expect(names).toContain('my-llama:latest');
    const del = await request(`${c.url}/api/delete`, { method: 'DELETE', body: { model: 'my-llama' } });
    expect(del.text).toBe('');
    expect(del.status).toBe(200);
    names = (await getJson(`${c.url}/api/tags`)).body.models.map((m: any) => m.name);
    expect(names).not.toContain('my-llama:latest');
    const again = await request(`${c.url}/api/delete`, { method: 'DELETE', body: { model: 'my-llama' } });
    expect(again.status).toBe(404);
    expect(again.body).toEqual({ error: "model 'my-llama' not found" });
  });

  it('unloads (`ollama stop`: keep_alive 0, no prompt) from every backend holding the model loaded', async () => {
    const ollama = new Ollama({ host: c.url });
    // Load llama3.2 on b3 too, so two backends hold it.
    const pre = await request(`${c.url}/api/generate`, {
      body: { model: 'llama3.2' },
      headers: { 'x-balancer-backends': 'b3' },
    });
    expect(pre.body.backends).toEqual({ b3: 'loaded' });
    const loadedOn = async () =>
      (await ollama.ps()).models
        .filter((m) => m.name === 'llama3.2:latest')
        .map((m: any) => m.backend)
        .sort();
    await waitFor(async () => (await loadedOn()).length === 2, 5000, 'llama3.2 loaded on b1 and b3');

    const stop = await ollama.generate({ model: 'llama3.2', prompt: '', keep_alive: 0 });
    expect(stop).toMatchObject({ model: 'llama3.2', done: true, done_reason: 'unload', response: '' });
    expect((stop as any).backends).toEqual({ b1: 'unloaded', b3: 'unloaded' });
    expect(await loadedOn()).toEqual([]);
    expect(c.sims.map((x) => x.stats().active)).toEqual([0, 0, 0]);
    // qwen2.5 on b2 is untouched; a chat unload ("0s") of a model loaded nowhere goes to one holder as usual.
    expect((await ollama.ps()).models.map((m) => m.name)).toEqual(['qwen2.5:7b']);
    const again = await request(`${c.url}/api/chat`, { body: { model: 'llama3.2', messages: [], keep_alive: '0s' } });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ done: true, done_reason: 'unload' });
    expect(again.body.backends).toBeUndefined();
  });

  it('works with the real clients: ollama-js list, ps, pull (streamed), delete, embed; openai models.list, embeddings.create', async () => {
    const ollama = new Ollama({ host: c.url });
    const list = await ollama.list();
    expect(list.models.map((m) => m.name).sort()).toEqual(['llama3.2:latest', 'nomic-embed-text:latest', 'qwen2.5:7b']);
    const ps = await ollama.ps();
    expect(ps.models.map((m) => m.name).sort()).toEqual(['llama3.2:latest', 'qwen2.5:7b']);
    const progress = await ollama.pull({ model: 'gemma2:2b', stream: true });
    let last: any;
    for await (const p of progress) last = p;
    expect(last.status).toBe('success');
    await ollama.delete({ model: 'gemma2:2b' });
    expect((await ollama.list()).models.map((m) => m.name)).not.toContain('gemma2:2b');
    const emb = await ollama.embed({ model: 'nomic-embed-text', input: ['hello', 'world'] });
    expect(emb.embeddings).toHaveLength(2);
    const show = await ollama.show({ model: 'llama3.2' });
    expect(show).toBeTruthy();
    const openai = new OpenAI({ baseURL: `${c.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const models = await openai.models.list();
    expect(models.data.map((m) => m.id).sort()).toEqual(['llama3.2:latest', 'nomic-embed-text:latest', 'qwen2.5:7b']);
    const e = await openai.embeddings.create({ model: 'nomic-embed-text', input: 'hello' });
    expect(e.data[0].embedding.length).toBeGreaterThan(10);
  });
});
