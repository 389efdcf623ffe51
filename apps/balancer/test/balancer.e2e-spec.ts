import { Ollama } from 'ollama';
import OpenAI from 'openai';
import {
  Cluster,
  getJson,
  request,
  startBalancer,
  startCluster,
  streamTimed,
  waitFor,
  writeConfigFile,
} from './harness';

const model = 'llama3.2';
const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content }],
  ...extra,
});

describe('balancer end to end (three simulated Ollama servers)', () => {
  let c: Cluster;
  afterEach(async () => {
    await c?.close();
  });

  it('round-robin spreads requests evenly and names the backend that served', async () => {
    c = await startCluster([{ tokensPerSecond: 2000 }, { tokensPerSecond: 2000 }, { tokensPerSecond: 2000 }], {
      ROUTING_POLICY: 'round-robin',
    });
    const served: string[] = [];
    for (let i = 0; i < 9; i++) {
      const r = await request(`${c.url}/api/generate`, { body: { model, prompt: `p${i}`, stream: false } });
      expect(r.status).toBe(200);
      expect(r.body.done).toBe(true);
      served.push(String(r.headers['x-balancer-backend']));
    }
    expect(served.filter((s) => s === 'b1')).toHaveLength(3);
    expect(served.filter((s) => s === 'b2')).toHaveLength(3);
    expect(served.filter((s) => s === 'b3')).toHaveLength(3);
    expect(c.sims.map((s) => s.stats().byRoute['POST /api/generate'])).toEqual([3, 3, 3]);
  });

  it('least-connections sends concurrent streams to different backends', async () => {
    c = await startCluster([{ tokensPerSecond: 20 }, { tokensPerSecond: 20 }, { tokensPerSecond: 20 }], {
      ROUTING_POLICY: 'least-connections',
    });
    const results = await Promise.all(
      [0, 1, 2].map((i) => streamTimed(`${c.url}/api/chat`, chat(`q${i}`, { options: { num_predict: 10 } }))),
    );
    const backends = results.map((r) => r.headers['x-balancer-backend']).sort();
    expect(backends).toEqual(['b1', 'b2', 'b3']);
  });

  it('streams /api/chat line by line with the backend spacing preserved', async () => {
    c = await startCluster([{ tokensPerSecond: 10 }]);
    const start = Date.now();
    const r = await streamTimed(`${c.url}/api/chat`, chat('hello there', { options: { num_predict: 8 } }));
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toContain('application/x-ndjson');
    const lines = r.chunks
      .map((ch) => ch.text)
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(9);
    expect(lines[8].done).toBe(true);
    expect(lines[8].done_reason).toBe('length');
    // 8 tokens at 10/s: ~700 ms between the first and last token. A buffering proxy would deliver
    // everything in one burst at the end; we require the arrivals to spread over at least half of it.
    expect(r.chunks.length).toBeGreaterThanOrEqual(5);
    const spread = r.chunks[r.chunks.length - 1].at - r.chunks[0].at;
    expect(spread).toBeGreaterThan(350);
    expect(r.chunks[0].at - start).toBeLessThan(spread + 2000);
  });

  it('ends an OpenAI-compatible stream with data: [DONE]', async () => {
    c = await startCluster([{ tokensPerSecond: 500 }]);
    const r = await streamTimed(`${c.url}/v1/chat/completions`, {
      model,
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 5,
    });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toContain('text/event-stream');
    const text = r.chunks.map((ch) => ch.text).join('');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(text).toContain('"object":"chat.completion.chunk"');
  });

  it('forwards a large POST body intact', async () => {
    c = await startCluster([{ tokensPerSecond: 2000, promptTokensPerSecond: 10_000_000 }]);
    // 6 MB prompt: the simulator's output is a deterministic function of the prompt, and it counts
    // prompt tokens from its length, so equal answers direct and through the balancer mean equal bytes.
    const big = 'lorem ipsum dolor sit amet '.repeat(240_000) + 'END';
    const body = { model, prompt: big, stream: false, options: { num_predict: 12 } };
    const via = await request(`${c.url}/api/generate`, { body });
    const direct = await request(`${c.sims[0].url}/api/generate`, { body });
    expect(via.status).toBe(200);
    expect(via.body.response).toBe(direct.body.response);
    expect(via.body.prompt_eval_count).toBe(direct.body.prompt_eval_count);
    expect(via.body.prompt_eval_count).toBeGreaterThan(1_000_000);
  });

  it('excludes an unhealthy backend and brings it back when it answers again', async () => {
    c = await startCluster([{ tokensPerSecond: 2000 }, { tokensPerSecond: 2000 }], { ROUTING_POLICY: 'round-robin' });
    await c.sims[1].update({ faults: { refuseConnections: true } });
    await waitFor(
      async () => (await getJson(`${c.url}/balancer/status`)).body.backends[1].health === 'unhealthy',
      10_000,
      'b2 unhealthy',
    );
    const st = (await getJson(`${c.url}/balancer/status`)).body.backends[1];
    expect(st.lastError).toBeTruthy();
    for (let i = 0; i < 4; i++) {
      const r = await request(`${c.url}/api/generate`, { body: { model, prompt: 'x', stream: false } });
      expect(r.status).toBe(200);
      expect(r.headers['x-balancer-backend']).toBe('b1');
    }
    await c.sims[1].update({ faults: { refuseConnections: false } });
    await waitFor(
      async () => (await getJson(`${c.url}/balancer/status`)).body.backends[1].health === 'healthy',
      10_000,
      'b2 healthy again',
    );
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++)
      seen.add(
        String(
          (await request(`${c.url}/api/generate`, { body: { model, prompt: 'y', stream: false } })).headers[
            'x-balancer-backend'
          ],
        ),
      );
    expect(seen.has('b2')).toBe(true);
  });

  it('frees the in-flight slot and aborts upstream when the client goes away', async () => {
    c = await startCluster([{ tokensPerSecond: 20 }]);
    await streamTimed(`${c.url}/api/chat`, chat('long answer', { options: { num_predict: 200 } }), (_chunk, req) =>
      req.destroy(),
    );
    await waitFor(
      async () => {
        const st = (await getJson(`${c.url}/balancer/status`)).body;
        return st.backends[0].inFlight === 0 && c.sims[0].stats().active === 0;
      },
      5000,
      'in-flight back to zero on the balancer and the backend',
    );
    expect(c.sims[0].stats().aborted).toBeGreaterThanOrEqual(1);
  });

  it('answers 503 with Retry-After in Ollama shape (and OpenAI shape on /v1) when no backend is healthy', async () => {
    c = await startCluster([{}, {}]);
    await Promise.all(c.sims.map((s) => s.update({ faults: { refuseConnections: true } })));
    await waitFor(async () => (await getJson(`${c.url}/health/ready`)).status === 503, 10_000, 'not ready');
    const r = await request(`${c.url}/api/chat`, { body: chat('hi') });
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBeDefined();
    expect(typeof r.body.error).toBe('string');
    const o = await request(`${c.url}/v1/chat/completions`, { body: chat('hi') });
    expect(o.status).toBe(503);
    expect(o.headers['retry-after']).toBeDefined();
    expect(typeof o.body.error.message).toBe('string');
    expect(o.body.error.type).toBe('api_error');
  });

  it('answers 502 in Ollama shape when the only backend refuses the connection', async () => {
    c = await startCluster([{}], { HEALTH_INTERVAL_MS: '60000' });
    await c.sims[0].update({ faults: { refuseConnections: true } });
    const r = await request(`${c.url}/api/generate`, { body: { model, prompt: 'x', stream: false } });
    expect(r.status).toBe(502);
    expect(r.body.error).toMatch(/b1/);
    const st = (await getJson(`${c.url}/balancer/status`)).body;
    expect(st.backends[0].inFlight).toBe(0);
  });
});

describe('balancer with no backends configured', () => {
  it('answers 503 with Retry-After and is not ready', async () => {
    const { app, url } = await startBalancer({
      OLLAMA_BACKENDS: '',
      BALANCER_CONFIG: writeConfigFile({ backends: [] }),
    });
    try {
      const r = await request(`${url}/api/chat`, { body: chat('hi') });
      expect(r.status).toBe(503);
      expect(r.headers['retry-after']).toBeDefined();
      expect(r.body.error).toMatch(/no Ollama backends/);
      expect((await getJson(`${url}/health/ready`)).status).toBe(503);
      expect((await getJson(`${url}/health/live`)).status).toBe(200);
    } finally {
      await app.close();
    }
  });
});

describe('real clients through the balancer', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster([{ tokensPerSecond: 400 }, { tokensPerSecond: 400 }]);
  });
  afterAll(async () => {
    await c.close();
  });

  it('ollama-js: chat streaming and not, generate, list', async () => {
    const ollama = new Ollama({ host: c.url });
    const stream = await ollama.chat({
      model,
      messages: [{ role: 'user', content: 'why is the sky blue?' }],
      stream: true,
      options: { num_predict: 6 },
    });
    let text = '';
    let last: any;
    for await (const part of stream) {
      text += part.message.content;
      last = part;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(last.done).toBe(true);
    const whole = await ollama.chat({
      model,
      messages: [{ role: 'user', content: 'why is the sky blue?' }],
      options: { num_predict: 6 },
    });
    expect(whole.message.content).toBe(text);
    const gen = await ollama.generate({ model, prompt: 'hello', options: { num_predict: 4 } });
    expect(gen.done).toBe(true);
    expect(gen.response?.length).toBeGreaterThan(0);
    const list = await ollama.list();
    expect(list.models.map((m) => m.name)).toEqual(
      expect.arrayContaining(['llama3.2:latest', 'nomic-embed-text:latest']),
    );
    await expect(ollama.chat({ model: 'nope:1b', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject({
      status_code: 404,
      error: "model 'nope:1b' not found",
    });
  });

  it('openai: chat.completions.create streaming', async () => {
    const client = new OpenAI({ baseURL: `${c.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'hello' }],
      stream: true,
      max_tokens: 6,
    });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(finish).toBe('length');
  });
});
