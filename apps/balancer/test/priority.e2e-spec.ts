import Anthropic from '@anthropic-ai/sdk';
import * as http from 'http';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { USAGE_CLOCK } from '../src/usage/usage.service';
import { Cluster, getJson, ProviderOverride, request, RawResponse, startCluster, waitFor } from './harness';

/**
 * Priority classes, fair share and token quotas through the real app, in front of one simulated
 * server with one slot. A long streamed request holds the slot while the others queue in a known
 * order; closing it frees the slot, and the queue is then served one request at a time, so the
 * order in which answers begin is the order of the grants (no timing assumed).
 */

const LLAMA = { name: 'llama3.2:latest', sizeBytes: 2_000_000_000 };
const ADMIN = 'test-admin-token-123';
const KEYS = {
  chat: 'chat-secret-key-1',
  std: 'std-secret-key-22',
  teamA: 'team-a-secret-key',
  teamB: 'team-b-secret-key',
  jobs: 'jobs-secret-key-3',
  spare: 'spare-secret-key4',
  tiny: 'tiny-secret-key-5',
};
const API_KEYS = Object.entries(KEYS)
  .map(([name, key]) => `${name}:${key}`)
  .join(',');
const API_KEY_LIMITS =
  'chat:class=interactive;teamA:weight=2;jobs:class=batch;spare:class=sheddable;tiny:tokensPerMinute=30';

async function cluster(env: Record<string, string> = {}, overrides: ProviderOverride[] = []): Promise<Cluster> {
  return startCluster(
    [{ models: [LLAMA], loaded: ['llama3.2:latest'], tokensPerSecond: 1000, numParallel: 1 }],
    { API_KEYS, API_KEY_LIMITS, ADMIN_TOKEN: ADMIN, QUEUE_TIMEOUT_MS: '60000', ...env },
    [{ parallel: 1 }],
    overrides,
  );
}

const status = async (c: Cluster) =>
  (await getJson(`${c.url}/balancer/status`, { authorization: `Bearer ${ADMIN}` })).body;

/** A streamed chat holding the only slot until `release()` closes it. */
async function holdSlot(c: Cluster): Promise<{ release: () => Promise<void> }> {
  const u = new URL(`${c.url}/api/chat`);
  const body = JSON.stringify({
    model: 'llama3.2',
    messages: [{ role: 'user', content: 'hold' }],
    options: { num_predict: 100_000 },
  });
  const req = http.request({
    hostname: u.hostname,
    port: u.port,
    path: u.pathname,
    method: 'POST',
    agent: false,
    headers: { 'content-type': 'application/json', 'x-api-key': KEYS.std },
  });
  const started = new Promise<void>((resolve, reject) => {
    req.on('response', (res) => {
      res.once('data', () => resolve());
      res.on('error', () => undefined);
    });
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
  });
  req.end(body);
  await started;
  return {
    // Closing the stream frees the slot; the queue is served from then on.
    release: async () => {
      req.destroy();
    },
  };
}

interface Queued {
  name: string;
  answer: Promise<RawResponse & { order: number }>;
}

/** Sends requests one by one, each once the previous one is seen waiting in the queue. */
async function enqueue(
  c: Cluster,
  list: { name: string; key: keyof typeof KEYS; headers?: Record<string, string> }[],
  order: { next: number },
): Promise<Queued[]> {
  const out: Queued[] = [];
  for (const item of list) {
    const before = (await status(c)).queue.length;
    const answer = orderedRequest(
      `${c.url}/api/chat`,
      {
        model: 'llama3.2',
        messages: [{ role: 'user', content: item.name }],
        stream: false,
        options: { num_predict: 3 },
      },
      { 'x-api-key': KEYS[item.key], ...item.headers },
      order,
    );
    out.push({ name: item.name, answer });
    await waitFor(async () => (await status(c)).queue.length === before + 1, 10_000, `${item.name} waiting`);
  }
  return out;
}

/** A request whose answer notes the order in which its status line arrived among its peers. */
function orderedRequest(
  url: string,
  body: unknown,
  headers: Record<string, string>,
  order: { next: number },
): Promise<RawResponse & { order: number }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const payload = JSON.stringify(body);
    const req = http.request(
      {
        hostname: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(payload)),
          ...headers,
        },
      },
      (res) => {
        const n = order.next++;
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let parsed: any = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, text, order: n });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function servedOrder(qs: Queued[]): Promise<string[]> {
  const answers = await Promise.all(qs.map(async (q) => ({ name: q.name, r: await q.answer })));
  for (const a of answers) expect({ name: a.name, status: a.r.status }).toEqual({ name: a.name, status: 200 });
  return answers.sort((a, b) => a.r.order - b.r.order).map((a) => a.name);
}

describe('priority classes and fair share in the placement queue', () => {
  let c: Cluster;
  afterEach(async () => {
    await c?.close();
  });

  it('serves the highest class first, and tells each answer how long it waited and where it entered', async () => {
    c = await cluster();
    const hold = await holdSlot(c);
    const order = { next: 0 };
    const qs = await enqueue(
      c,
      [
        { name: 'batch-1', key: 'jobs' },
        { name: 'standard-1', key: 'std' },
        { name: 'batch-2', key: 'jobs' },
        { name: 'interactive-1', key: 'chat' },
      ],
      order,
    );
    const st = await status(c);
    expect(st.queue.waiting).toEqual([
      { class: 'interactive', key: 'chat', waiting: 1 },
      { class: 'standard', key: 'std', waiting: 1 },
      { class: 'batch', key: 'jobs', waiting: 2 },
    ]);
    await hold.release();
    expect(await servedOrder(qs)).toEqual(['interactive-1', 'standard-1', 'batch-1', 'batch-2']);
    const interactive = await qs[3].answer;
    // It entered first in line for its class and above (the batch requests were behind it).
    expect(interactive.headers['x-balancer-queue-position']).toBe('1');
    expect(Number(interactive.headers['x-balancer-queue-ms'])).toBeGreaterThan(0);
    expect((await qs[2].answer).headers['x-balancer-queue-position']).toBe('3');
  });

  it('shares a class between keys by weight (2:1), first come first served within a key', async () => {
    c = await cluster();
    const hold = await holdSlot(c);
    const order = { next: 0 };
    const list: { name: string; key: 'teamA' | 'teamB' }[] = [];
    for (let i = 0; i < 6; i++) list.push({ name: `a${i}`, key: 'teamA' }, { name: `b${i}`, key: 'teamB' });
    const qs = await enqueue(c, list, order);
    await hold.release();
    const served = await servedOrder(qs);
    const first9 = served.slice(0, 9);
    expect(first9.filter((n) => n.startsWith('a'))).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'a5']);
    expect(first9.filter((n) => n.startsWith('b'))).toEqual(['b0', 'b1', 'b2']);
  });

  it('lets X-Priority lower a class but never raise it', async () => {
    c = await cluster();
    const hold = await holdSlot(c);
    const order = { next: 0 };
    const qs = await enqueue(
      c,
      [
        { name: 'standard', key: 'std' },
        { name: 'batch-asking-interactive', key: 'jobs', headers: { 'x-priority': 'interactive' } },
        { name: 'interactive-asking-batch', key: 'chat', headers: { 'x-priority': 'batch' } },
        { name: 'interactive', key: 'chat' },
      ],
      order,
    );
    await hold.release();
    expect(await servedOrder(qs)).toEqual([
      'interactive',
      'standard',
      'batch-asking-interactive',
      'interactive-asking-batch',
    ]);
    const unknown = await request(`${c.url}/api/chat`, {
      body: { model: 'llama3.2', messages: [{ role: 'user', content: 'x' }] },
      headers: { 'x-api-key': KEYS.chat, 'x-priority': 'urgent' },
    });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toEqual({
      error: 'X-Priority must name a class: one of interactive, standard, batch, sheddable (got "urgent")',
    });
  });

  it('gives a waiting lower class its minimum share: one grant in every PRIORITY_MIN_SHARE_EVERY', async () => {
    c = await cluster({ PRIORITY_MIN_SHARE_EVERY: '3' });
    const hold = await holdSlot(c);
    const order = { next: 0 };
    const qs = await enqueue(
      c,
      [
        { name: 'batch', key: 'jobs' as const },
        ...Array.from({ length: 5 }, (_, i) => ({ name: `i${i}`, key: 'chat' as const })),
      ],
      order,
    );
    await hold.release();
    expect(await servedOrder(qs)).toEqual(['i0', 'i1', 'batch', 'i2', 'i3', 'i4']);
  });

  it('when the queue is full, a higher class displaces the newest lower-class waiter (503 + Retry-After)', async () => {
    c = await cluster({ QUEUE_MAX: '2' });
    const hold = await holdSlot(c);
    const order = { next: 0 };
    const qs = await enqueue(
      c,
      [
        { name: 'batch-old', key: 'jobs' },
        { name: 'batch-new', key: 'jobs' },
      ],
      order,
    );
    const interactive = orderedRequest(
      `${c.url}/api/chat`,
      { model: 'llama3.2', messages: [{ role: 'user', content: 'now' }], stream: false },
      { 'x-api-key': KEYS.chat },
      order,
    );
    const displaced = await qs[1].answer;
    expect(displaced.status).toBe(503);
    expect(Number(displaced.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(displaced.body.error).toMatch(
      /displaced from the full balancer queue by a request of a higher class than 'batch'/,
    );
    // Full again (batch-old and the interactive one): a batch arrival has nothing below it to displace.
    const late = await request(`${c.url}/api/chat`, {
      body: { model: 'llama3.2', messages: [{ role: 'user', content: 'late' }], stream: false },
      headers: { 'x-api-key': KEYS.jobs },
    });
    expect(late.status).toBe(503);
    expect(late.body.error).toMatch(/balancer queue is full/);
    expect(late.headers['retry-after']).toBeDefined();
    await hold.release();
    expect((await interactive).status).toBe(200);
    expect((await qs[0].answer).status).toBe(200);
    expect((await interactive).order).toBeLessThan((await qs[0].answer).order);
  });

  it('refuses a sheddable request with 429 + Retry-After while the fleet is full, serves it when not', async () => {
    c = await cluster();
    const body = { model: 'llama3.2', messages: [{ role: 'user', content: 'spare' }], stream: false };
    expect((await request(`${c.url}/api/chat`, { body, headers: { 'x-api-key': KEYS.spare } })).status).toBe(200);
    const hold = await holdSlot(c);
    const shed = await request(`${c.url}/api/chat`, { body, headers: { 'x-api-key': KEYS.spare } });
    expect(shed.status).toBe(429);
    expect(Number(shed.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(shed.body.error).toMatch(/requests of class 'sheddable' are refused/);
    // A client lowering itself to sheddable is refused the same way, in OpenAI's shape on /v1.
    const oai = await request(`${c.url}/v1/chat/completions`, {
      body,
      headers: { authorization: `Bearer ${KEYS.chat}`, 'x-priority': 'sheddable' },
    });
    expect(oai.status).toBe(429);
    expect(oai.body.error.message).toMatch(/sheddable/);
    await hold.release();
  });
});

describe('token usage and quotas per key', () => {
  let c: Cluster;
  afterEach(async () => {
    await c?.close();
  });

  it("counts every surface's tokens per key, equal to what the simulator produced and the clients read", async () => {
    // The request log lines, caught on their way to stdout.
    const lines: any[] = [];
    const write = process.stdout.write.bind(process.stdout);
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation(((chunk: any, ...rest: any[]) => {
      const text = String(chunk);
      if (!text.startsWith('{"level"')) return write(chunk, ...rest);
      for (const l of text.split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      return true;
    }) as any);
    try {
      await countEverySurface(lines);
    } finally {
      spy.mockRestore();
    }
  });

  async function countEverySurface(lines: any[]): Promise<void> {
    c = await cluster({ API_KEY_LIMITS: '', LOG_REQUESTS: 'true', LOG_LEVEL: 'log' });
    const ollama = new Ollama({ host: c.url, headers: { 'x-api-key': KEYS.teamA } });
    const openai = new OpenAI({ baseURL: `${c.url}/v1`, apiKey: KEYS.teamA, maxRetries: 0 });
    expect((await request(`${c.sims[0].url}/_sim/stats/reset`, { method: 'POST' })).status).toBe(200);
    let prompt = 0;
    const r1 = await ollama.chat({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'count me in' }],
      options: { num_predict: 7 },
    });
    prompt += r1.prompt_eval_count;
    let last: any;
    for await (const part of await ollama.generate({
      model: 'llama3.2',
      prompt: 'and me, streamed',
      stream: true,
      options: { num_predict: 9 },
    }))
      last = part;
    prompt += last.prompt_eval_count;
    const r3 = await openai.chat.completions.create({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'openai too' }],
      max_tokens: 5,
    });
    prompt += r3.usage!.prompt_tokens;
    let usage: any;
    for await (const chunk of await openai.chat.completions.create({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'streamed with usage' }],
      max_tokens: 4,
      stream: true,
      stream_options: { include_usage: true },
    }))
      if (chunk.usage) usage = chunk.usage;
    prompt += usage.prompt_tokens;
    // Anthropic's Messages API (the SDK sends the key as X-API-Key), whole and streamed.
    const anthropic = new Anthropic({ baseURL: c.url, apiKey: KEYS.teamA, maxRetries: 0 });
    const m1 = await anthropic.messages.create({
      model: 'llama3.2',
      max_tokens: 6,
      messages: [{ role: 'user', content: 'anthropic' }],
    });
    prompt += m1.usage.input_tokens;
    const m2 = await anthropic.messages
      .stream({ model: 'llama3.2', max_tokens: 8, messages: [{ role: 'user', content: 'anthropic streamed' }] })
      .finalMessage();
    prompt += m2.usage.input_tokens;
    // OpenAI's Responses API, whole and streamed.
    const r5 = await openai.responses.create({ model: 'llama3.2', input: 'responses', max_output_tokens: 2 });
    prompt += r5.usage!.input_tokens;
    let completed: any;
    for await (const ev of await openai.responses.create({
      model: 'llama3.2',
      input: 'responses streamed',
      max_output_tokens: 3,
      stream: true,
    }))
      if (ev.type === 'response.completed') completed = ev.response;
    prompt += completed.usage.input_tokens;
    const output =
      7 +
      9 +
      5 +
      4 +
      m1.usage.output_tokens +
      m2.usage.output_tokens +
      r5.usage!.output_tokens +
      completed.usage.output_tokens;
    expect([
      m1.usage.output_tokens,
      m2.usage.output_tokens,
      r5.usage!.output_tokens,
      completed.usage.output_tokens,
    ]).toEqual([6, 8, 2, 3]);
    // A stream without include_usage carries no counts: it is counted as an unmetered request.
    for await (const _ of await openai.chat.completions.create({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'no usage' }],
      max_tokens: 3,
      stream: true,
    }))
      void _;
    const sim = await getJson(`${c.sims[0].url}/_sim/stats`);
    const view = await getJson(`${c.url}/balancer/usage`, { authorization: `Bearer ${ADMIN}` });
    expect(view.status).toBe(200);
    const mine = view.body.keys.find((k: any) => k.key === 'teamA');
    expect(mine).toMatchObject({ requests: 9, unmeteredRequests: 1, promptTokens: prompt, outputTokens: output });
    // The simulator's own count also holds the 3 tokens of the stream that carried no usage.
    expect(sim.body.tokens).toBe(mine.outputTokens + 3);
    // The same figures in /metrics (key names from configuration only) and in the request log lines.
    const metrics = (await getJson(`${c.url}/metrics`)).text;
    expect(metrics).toContain(`balancer_key_tokens_total{key="teamA",kind="output"} ${output}`);
    expect(metrics).toContain(`balancer_key_tokens_total{key="teamA",kind="prompt"} ${prompt}`);
    expect(metrics).toContain('balancer_key_requests_total{key="teamA",class="standard",metered="false"} 1');
    await waitFor(
      () => lines.filter((l) => l.event === 'request' && l.key === 'teamA').length === 9,
      5000,
      'nine request lines',
    );
    const logged = lines.filter((l) => l.event === 'request' && l.key === 'teamA');
    expect(logged.every((l) => l.class === 'standard')).toBe(true);
    expect(logged.reduce((n, l) => n + (l.outputTokens ?? 0), 0)).toBe(output);
    expect(logged.reduce((n, l) => n + (l.promptTokens ?? 0), 0)).toBe(prompt);
    expect(JSON.stringify(logged)).not.toContain(KEYS.teamA);
  }

  it('shows a key its own usage only; the admin token sees every key; nothing without either', async () => {
    c = await cluster();
    expect((await getJson(`${c.url}/balancer/usage`)).status).toBe(401);
    const own = await getJson(`${c.url}/balancer/usage`, { 'x-api-key': KEYS.jobs });
    expect(own.status).toBe(200);
    expect(own.body.keys.map((k: any) => k.key)).toEqual(['jobs']);
    expect(own.body.keys[0]).toMatchObject({ class: 'batch', weight: 1 });
    const all = await getJson(`${c.url}/balancer/usage`, { authorization: `Bearer ${ADMIN}` });
    expect(all.body.keys.map((k: any) => k.key)).toEqual(Object.keys(KEYS));
    expect(JSON.stringify(all.body)).not.toContain(KEYS.jobs);
  });

  it('refuses the next request over a token quota with 429 + Retry-After, never cutting the answer that crossed it, and lets it in once the window frees', async () => {
    // The quota's clock, moved by the test instead of waiting a real minute.
    let skewMs = 0;
    c = await cluster({}, [{ provide: USAGE_CLOCK, useValue: () => Date.now() + skewMs }]);
    const body = { model: 'llama3.2', messages: [{ role: 'user', content: 'spend' }], options: { num_predict: 40 } };
    // 'tiny' may use 30 tokens a minute: this streamed answer crosses it and still arrives whole.
    const first = await request(`${c.url}/api/chat`, { body, headers: { 'x-api-key': KEYS.tiny } });
    expect(first.status).toBe(200);
    const lines = first.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[lines.length - 1]).toMatchObject({ done: true, eval_count: 40 });
    const refused = await request(`${c.url}/api/chat`, { body, headers: { 'x-api-key': KEYS.tiny } });
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(refused.body.error).toMatch(
      /^token quota exceeded for key 'tiny': \d+ of 30 tokens per minute used \(tokensPerMinute\)/,
    );
    const oai = await request(`${c.url}/v1/chat/completions`, {
      body: { model: 'llama3.2', messages: [{ role: 'user', content: 'x' }] },
      headers: { authorization: `Bearer ${KEYS.tiny}` },
    });
    expect(oai.status).toBe(429);
    expect(oai.body.error.message).toMatch(/tokensPerMinute/);
    // Other keys are not affected.
    expect((await request(`${c.url}/api/chat`, { body, headers: { 'x-api-key': KEYS.std } })).status).toBe(200);
    // Just before the window frees enough it is still refused; once Retry-After has passed it is not.
    skewMs = (retryAfter - 2) * 1000;
    expect((await request(`${c.url}/api/chat`, { body, headers: { 'x-api-key': KEYS.tiny } })).status).toBe(
      retryAfter > 2 ? 429 : 200,
    );
    skewMs = retryAfter * 1000;
    const again = await request(`${c.url}/api/chat`, {
      body: { ...body, stream: false },
      headers: { 'x-api-key': KEYS.tiny },
    });
    expect(again.status).toBe(200);
    expect(again.body.eval_count).toBe(40);
  });
});
