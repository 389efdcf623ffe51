import * as http from 'http';
import { Child, Cluster, request, spawnSim, startBalancer, startCluster, waitFor, writeConfigFile } from './harness';

/**
 * A chat stream whose backend dies after the first byte is continued on another backend holding the
 * same model: the client sees one well-formed stream with exactly the text an uninterrupted run with
 * the same seed gives. The serving simulator is cut mid-stream (stopMidStreamAfterChunks, set the
 * moment the first chunk reaches the client, so the cut always falls inside the answer).
 */

const FAST = { loadMsPerGB: 0, tokensPerSecond: 40, defaultOutputTokens: 24, numParallel: 4 };
const MODELS = [
  { name: 'llama3.2:latest', sizeBytes: 2e9 },
  { name: 'noprefill:latest', sizeBytes: 1e9, prefill: false },
  { name: 'qwen3:0.6b', sizeBytes: 5e8 },
];
const ASK = [{ role: 'user', content: 'Tell me about the sea' }];
const WEATHER = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };

interface Streamed {
  status: number;
  backend: string;
  text: string;
}

/** Streams a POST; when `cut` is set, the serving simulator is told to cut the stream right after the first chunk arrives. */
/** `cut`: true cuts after the first chunk; a string cuts after the first chunk that contains it. */
function stream(c: Cluster, path: string, body: unknown, cut: boolean | string): Promise<Streamed> {
  return new Promise((resolve, reject) => {
    const u = new URL(c.url + path);
    const payload = JSON.stringify(body);
    const req = http.request(
      {
        hostname: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        agent: false,
      },
      (res) => {
        const backend = String(res.headers['x-balancer-backend']);
        let text = '';
        let armed = cut !== false;
        res.on('data', (chunk: Buffer) => {
          const t = chunk.toString('utf8');
          text += t;
          if (armed && (cut === true || t.includes(cut as string))) {
            armed = false;
            void c.sims[Number(backend.slice(1)) - 1].update({ faults: { stopMidStreamAfterChunks: 1 } });
          }
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, backend, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function clearFaults(c: Cluster): Promise<void> {
  for (const s of c.sims) await s.update({ faults: { stopMidStreamAfterChunks: undefined } as any });
}

async function resumesSoFar(c: Cluster): Promise<number> {
  const m = await request(`${c.url}/metrics`);
  let n = 0;
  for (const line of m.text.split('\n'))
    if (line.startsWith('balancer_stream_resumes_total{')) n += Number(line.split(' ').pop());
  return n;
}

const lines = (t: string) =>
  t
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
const events = (t: string) =>
  t
    .split('\n\n')
    .filter((e) => e.trim() !== '')
    .map((e) => {
      const name = /^event: (.*)$/m.exec(e)?.[1];
      const data = /^data: (.*)$/m.exec(e)![1];
      return { name, data: data === '[DONE]' ? '[DONE]' : JSON.parse(data) };
    });

describe('stream resume (STREAM_RESUME on)', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster(
      [
        { ...FAST, models: MODELS },
        { ...FAST, models: MODELS },
      ],
      { STREAM_RESUME_MODELS: 'llama3.2,qwen3:*' },
    );
  });
  afterAll(() => c.close());
  afterEach(() => clearFaults(c));

  it('/api/chat: one stream, exactly the uninterrupted text, counters for the whole answer', async () => {
    const body = { model: 'llama3.2', messages: ASK, options: { seed: 7 } };
    const whole = lines((await stream(c, '/api/chat', body, false)).text);
    const before = await resumesSoFar(c);
    const cut = await stream(c, '/api/chat', body, true);
    expect(cut.status).toBe(200);
    const got = lines(cut.text);
    expect(got.some((l) => l.error !== undefined)).toBe(false);
    const text = (ls: any[]) => ls.map((l) => l.message?.content ?? '').join('');
    expect(text(got)).toBe(text(whole));
    expect(text(got).length).toBeGreaterThan(0);
    expect(got.filter((l) => l.done === true)).toHaveLength(1);
    const final = got[got.length - 1];
    expect(final.done).toBe(true);
    expect(final.done_reason).toBe(whole[whole.length - 1].done_reason);
    expect(final.eval_count).toBe(whole[whole.length - 1].eval_count);
    expect(await resumesSoFar(c)).toBe(before + 1);
  });

  it('/api/chat with num_predict: the resumed request asks only for what is missing', async () => {
    const body = { model: 'llama3.2', messages: ASK, options: { seed: 9, num_predict: 20 } };
    const whole = lines((await stream(c, '/api/chat', body, false)).text);
    const got = lines((await stream(c, '/api/chat', body, true)).text);
    const text = (ls: any[]) => ls.map((l) => l.message?.content ?? '').join('');
    expect(text(got)).toBe(text(whole));
    expect(got[got.length - 1].done_reason).toBe('length');
    expect(got[got.length - 1].eval_count).toBe(20);
  });

  it('/v1/chat/completions: same id and created, one role, the whole text, usage for the whole answer', async () => {
    const body = { model: 'llama3.2', messages: ASK, seed: 11, stream: true, stream_options: { include_usage: true } };
    const whole = events((await stream(c, '/v1/chat/completions', body, false)).text);
    const before = await resumesSoFar(c);
    const cut = await stream(c, '/v1/chat/completions', body, true);
    const got = events(cut.text);
    const chunks = got.filter((e) => e.data !== '[DONE]').map((e) => e.data);
    expect(chunks.some((d) => d.error !== undefined)).toBe(false);
    expect(new Set(chunks.map((d) => d.id)).size).toBe(1);
    expect(new Set(chunks.map((d) => d.created)).size).toBe(1);
    expect(chunks.filter((d) => d.choices[0]?.delta?.role !== undefined)).toHaveLength(1);
    const text = (es: any[]) =>
      es.map((e) => (e.data === '[DONE]' ? '' : (e.data.choices[0]?.delta?.content ?? ''))).join('');
    expect(text(got)).toBe(text(whole));
    expect(chunks.filter((d) => d.choices[0]?.finish_reason)).toHaveLength(1);
    expect(chunks[chunks.length - 1].usage.completion_tokens).toBe(
      whole[whole.length - 2].data.usage.completion_tokens,
    );
    expect(got.filter((e) => e.data === '[DONE]')).toHaveLength(1);
    expect(got[got.length - 1].data).toBe('[DONE]');
    expect(await resumesSoFar(c)).toBe(before + 1);
  });

  it('/v1/messages: one message_start, one text block, the whole text, usage for the whole answer', async () => {
    // Anthropic has no seed: the instances' own seed makes both runs alike.
    const body = { model: 'llama3.2', max_tokens: 100, messages: ASK, stream: true };
    const whole = events((await stream(c, '/v1/messages', body, false)).text);
    const before = await resumesSoFar(c);
    const got = events((await stream(c, '/v1/messages', body, true)).text);
    const names = got.map((e) => e.name);
    expect(names.filter((n) => n === 'message_start')).toHaveLength(1);
    expect(names.filter((n) => n === 'content_block_start')).toHaveLength(1);
    expect(names.filter((n) => n === 'content_block_stop')).toHaveLength(1);
    expect(names.filter((n) => n === 'error')).toHaveLength(0);
    expect(names[names.length - 1]).toBe('message_stop');
    expect(got.filter((e) => e.name === 'content_block_delta').every((e) => e.data.index === 0)).toBe(true);
    const text = (es: any[]) =>
      es
        .filter((e) => e.name === 'content_block_delta')
        .map((e) => e.data.delta.text)
        .join('');
    expect(text(got)).toBe(text(whole));
    const usage = (es: any[]) => es.find((e) => e.name === 'message_delta').data;
    expect(usage(got).usage.output_tokens).toBe(usage(whole).usage.output_tokens);
    expect(usage(got).delta.stop_reason).toBe(usage(whole).delta.stop_reason);
    expect(await resumesSoFar(c)).toBe(before + 1);
  });

  it('a tool call in flight: the client gets the error line and nothing else', async () => {
    for (const s of c.sims) await s.update({ faults: { stopMidStreamAfterChunks: 1 } });
    const before = await resumesSoFar(c);
    const tools = [
      { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: WEATHER } },
    ];
    const r = await stream(
      c,
      '/api/chat',
      { model: 'llama3.2', tools, messages: [{ role: 'user', content: 'call get_weather for Paris' }] },
      false,
    );
    const got = lines(r.text);
    expect(got).toHaveLength(2);
    expect(got[0].message.tool_calls[0].function.name).toBe('get_weather');
    expect(got[1]).toEqual({ error: expect.stringMatching(/^backend b\d: /) });
    expect(await resumesSoFar(c)).toBe(before);
  });

  it('thinking streaming: the error line; once the content began, resumed with the whole text', async () => {
    const body = { model: 'qwen3:0.6b', think: true, messages: ASK, options: { seed: 13 } };
    const before = await resumesSoFar(c);
    const during = lines((await stream(c, '/api/chat', body, true)).text);
    expect(during[during.length - 1]).toEqual({ error: expect.stringMatching(/^backend b\d: /) });
    expect(during.slice(0, -1).every((l) => l.message.thinking && !l.message.content)).toBe(true);
    expect(await resumesSoFar(c)).toBe(before);
    await clearFaults(c);
    const whole = lines((await stream(c, '/api/chat', body, false)).text);
    // Cut once the first content chunk reached the client (thinking is over).
    const after = lines(
      (await stream(c, '/api/chat', body, '"content":"' + whole.find((l) => l.message?.content)!.message.content)).text,
    );
    const pick = (ls: any[], k: 'content' | 'thinking') => ls.map((l) => l.message?.[k] ?? '').join('');
    expect(after.some((l) => l.error !== undefined)).toBe(false);
    expect(pick(after, 'thinking')).toBe(pick(whole, 'thinking'));
    expect(pick(after, 'content')).toBe(pick(whole, 'content'));
    expect(after[after.length - 1].eval_count).toBe(whole[whole.length - 1].eval_count);
    expect(await resumesSoFar(c)).toBe(before + 1);
  });

  it('a model without prefill support is not resumed: the error line, as before', async () => {
    const before = await resumesSoFar(c);
    const r = await stream(c, '/api/chat', { model: 'noprefill', messages: ASK, options: { seed: 3 } }, true);
    const got = lines(r.text);
    expect(got[got.length - 1]).toEqual({ error: expect.stringMatching(/^backend b\d: /) });
    expect(got.filter((l) => l.done === true)).toHaveLength(0);
    expect(await resumesSoFar(c)).toBe(before);
  });

  it('format requests are not resumed', async () => {
    const before = await resumesSoFar(c);
    const r = await stream(
      c,
      '/api/chat',
      { model: 'llama3.2', format: 'json', messages: ASK, options: { seed: 3 } },
      true,
    );
    const got = lines(r.text);
    expect(got[got.length - 1]).toEqual({ error: expect.stringMatching(/^backend b\d: /) });
    expect(await resumesSoFar(c)).toBe(before);
  });
});

describe('stream resume after SIGKILL of the serving simulator', () => {
  // Each test SIGKILLs one simulator process; four of them leave a live holder of the model for the
  // resumed request after every one of the three kills.
  let sims: Child[];
  let app: { close(): Promise<void> };
  let url: string;
  beforeAll(async () => {
    sims = await Promise.all([1, 2, 3, 4].map(() => spawnSim({ ...FAST, models: MODELS })));
    const file = writeConfigFile({ backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url })) });
    const started = await startBalancer({ BALANCER_CONFIG: file });
    app = started.app;
    url = started.url;
    await waitFor(
      async () =>
        (await request(`${url}/balancer/status`)).body.backends.every(
          (b: any) => b.health === 'healthy' && b.inventoryAt !== null,
        ),
      10_000,
      'backends ready',
    );
  });
  afterAll(async () => {
    await app.close();
    for (const s of sims) if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
  });

  const killed = () => sims.filter((s) => s.proc.signalCode === 'SIGKILL').length;

  /** Streams a POST; with `kill`, SIGKILLs the serving simulator (X-Balancer-Backend) after the first chunk. */
  const run = (path: string, body: unknown, kill: boolean) =>
    new Promise<string>((resolve, reject) => {
      const u = new URL(url + path);
      const req = http.request(
        {
          hostname: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          agent: false,
        },
        (res) => {
          let text = '';
          let first = true;
          res.on('data', (chunk: Buffer) => {
            text += chunk.toString('utf8');
            if (first && kill)
              sims[Number(String(res.headers['x-balancer-backend']).slice(1)) - 1].proc.kill('SIGKILL');
            first = false;
          });
          res.on('end', () => resolve(text));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });

  it('/api/chat: the client still gets one complete stream with the uninterrupted text', async () => {
    const body = { model: 'llama3.2', messages: ASK, options: { seed: 21 } };
    const whole = lines(await run('/api/chat', body, false));
    const before = killed();
    const got = lines(await run('/api/chat', body, true));
    const text = (ls: any[]) => ls.map((l) => l.message?.content ?? '').join('');
    expect(got.some((l) => l.error !== undefined)).toBe(false);
    expect(text(got)).toBe(text(whole));
    expect(text(got).length).toBeGreaterThan(0);
    expect(got.filter((l) => l.done === true)).toHaveLength(1);
    expect(got[got.length - 1].eval_count).toBe(whole[whole.length - 1].eval_count);
    expect(killed()).toBe(before + 1);
  });

  it('/v1/chat/completions: same id and created, one role, the whole text, usage, one [DONE]', async () => {
    const body = { model: 'llama3.2', messages: ASK, seed: 23, stream: true, stream_options: { include_usage: true } };
    const whole = events(await run('/v1/chat/completions', body, false));
    const before = killed();
    const got = events(await run('/v1/chat/completions', body, true));
    expect(killed()).toBe(before + 1);
    expect(got.filter((e) => e.name === 'error')).toHaveLength(0);
    const chunks = got.filter((e) => e.data !== '[DONE]').map((e) => e.data);
    expect(chunks.some((d) => d.error !== undefined)).toBe(false);
    expect(new Set(chunks.map((d) => d.id)).size).toBe(1);
    expect(new Set(chunks.map((d) => d.created)).size).toBe(1);
    expect(chunks.filter((d) => d.choices[0]?.delta?.role !== undefined)).toHaveLength(1);
    const text = (es: any[]) =>
      es.map((e) => (e.data === '[DONE]' ? '' : (e.data.choices[0]?.delta?.content ?? ''))).join('');
    expect(text(got)).toBe(text(whole));
    expect(text(got).length).toBeGreaterThan(0);
    expect(chunks.filter((d) => d.choices[0]?.finish_reason)).toHaveLength(1);
    expect(chunks[chunks.length - 1].usage.completion_tokens).toBe(
      whole[whole.length - 2].data.usage.completion_tokens,
    );
    expect(got.filter((e) => e.data === '[DONE]')).toHaveLength(1);
    expect(got[got.length - 1].data).toBe('[DONE]');
  });

  it('/v1/messages: one message_start, one text block at index 0, the whole text, output_tokens', async () => {
    // Anthropic has no seed: the instances' own seed makes both runs alike.
    const body = { model: 'llama3.2', max_tokens: 100, messages: ASK, stream: true };
    const whole = events(await run('/v1/messages', body, false));
    const before = killed();
    const got = events(await run('/v1/messages', body, true));
    expect(killed()).toBe(before + 1);
    const names = got.map((e) => e.name);
    expect(names.filter((n) => n === 'message_start')).toHaveLength(1);
    expect(names.filter((n) => n === 'content_block_start')).toHaveLength(1);
    expect(names.filter((n) => n === 'content_block_stop')).toHaveLength(1);
    expect(names.filter((n) => n === 'error')).toHaveLength(0);
    expect(names[names.length - 1]).toBe('message_stop');
    expect(got.filter((e) => e.name === 'content_block_delta').every((e) => e.data.index === 0)).toBe(true);
    const text = (es: any[]) =>
      es
        .filter((e) => e.name === 'content_block_delta')
        .map((e) => e.data.delta.text)
        .join('');
    expect(text(got)).toBe(text(whole));
    expect(text(got).length).toBeGreaterThan(0);
    const usage = (es: any[]) => es.find((e) => e.name === 'message_delta').data;
    expect(usage(got).usage.output_tokens).toBe(usage(whole).usage.output_tokens);
    expect(usage(got).delta.stop_reason).toBe(usage(whole).delta.stop_reason);
  });
});
