import * as http from 'http';
import * as net from 'net';
import { AddressInfo } from 'net';
import OpenAI from 'openai';
import {
  Cluster,
  getJson,
  request,
  startBalancer,
  startCluster,
  startSims,
  streamTimed,
  waitFor,
  waitIdle,
  writeConfigFile,
} from './harness';

/**
 * Access control and hostile input: keys, rate limits, model allow-lists, the admin token, bad
 * bodies and routes, header hygiene towards backends, and no way for a client to pick an upstream.
 */
const model = 'llama3.2';
const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content }],
  ...extra,
});
const ADMIN = 'admin-token-0123456789';
const ALICE = 'sk-alice-0123456789';
const BOB = 'sk-bob-0123456789';

/**
 * Raw bytes over one socket: for requests an HTTP client library would refuse to send. Resolves
 * when the server closes (send Connection: close), or after `hangUpMs` when the client hangs up first.
 */
function raw(url: string, text: string, hangUpMs?: number): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => {
      s.write(text);
      if (hangUpMs !== undefined) setTimeout(() => s.destroy(), hangUpMs);
    });
    let out = '';
    s.on('data', (c) => (out += c.toString('utf8')));
    s.on('close', () => resolve(out));
    s.on('error', reject);
  });
}

const noStackTrace = (text: string) => {
  expect(text).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
  expect(text).not.toMatch(/\.ts:\d+/);
};

describe('bad input: each answered in Ollama shape (OpenAI shape on /v1), never a crash', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster([{ tokensPerSecond: 1000 }], { MAX_BODY_BYTES: '4096' });
  });
  afterAll(async () => c.close());

  it.each([
    ['malformed JSON', '/api/chat', '{"model": "llama3.2", "messages": [', 400, /invalid JSON/],
    ['empty body', '/api/generate', '', 400, /missing request body/],
    ['JSON that is not an object', '/api/generate', '[1,2,3]', 400, /must be a JSON object/],
    ['missing model', '/api/generate', '{"prompt":"hi"}', 400, /model is required/],
    ['model of the wrong type', '/api/chat', '{"model":42,"messages":[]}', 400, /model is required/],
    ['unknown model', '/api/generate', '{"model":"nope:1b","prompt":"x"}', 404, /model 'nope:1b' not found/],
  ])('%s (%s) answers its status', async (_what, path, body, code, message) => {
    const r = await request(`${c.url}${path}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    expect(r.status).toBe(code);
    expect(r.headers['content-type']).toMatch(/application\/json/);
    expect(r.body.error).toMatch(message);
    noStackTrace(r.text);
    const o = await request(`${c.url}/v1/chat/completions`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    expect(o.status).toBe(code);
    expect(typeof o.body.error.message).toBe('string');
    expect(o.body.error.type).toMatch(/invalid_request_error|not_found_error/);
  });

  it('body over MAX_BODY_BYTES -> 413 (declared length and chunked)', async () => {
    const big = JSON.stringify({ model, prompt: 'x'.repeat(10_000) });
    const r = await request(`${c.url}/api/generate`, { body: big });
    expect(r.status).toBe(413);
    expect(r.body.error).toMatch(/exceeds the limit of 4096 bytes/);
    const o = await request(`${c.url}/v1/completions`, { body: big });
    expect(o.status).toBe(413);
    expect(o.body.error.type).toBe('invalid_request_error');
    // Chunked, no Content-Length: cut off as it passes the limit.
    const head = `POST /api/generate HTTP/1.1\r\nConnection: close\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const chunk = big.slice(0, 6000);
    const text = await raw(c.url, `${head}${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`);
    expect(text).toMatch(/^HTTP\/1.1 413/);
    expect(text).toContain('"error"');
  });

  it('unknown routes -> 404, wrong method -> 405, each in its shape', async () => {
    const a = await request(`${c.url}/api/nope`);
    expect(a.status).toBe(404);
    expect(typeof a.body.error).toBe('string');
    const v = await request(`${c.url}/v1/nope`, { method: 'POST', body: '{}' });
    expect(v.status).toBe(404);
    expect(v.body.error.type).toBe('not_found_error');
    const n = await request(`${c.url}/definitely/not/here`);
    expect(n.status).toBe(404);
    expect(typeof n.body.error).toBe('string');
    const m = await request(`${c.url}/api/chat`, { method: 'GET' });
    expect(m.status).toBe(405);
    expect(m.headers.allow).toBe('POST');
    for (const r of [a, v, n, m]) noStackTrace(r.text);
  });

  it('garbage on the wire does not take the balancer down', async () => {
    await raw(c.url, 'THIS IS NOT HTTP\r\n\r\n', 500);
    await raw(c.url, 'POST /api/chat HTTP/1.1\r\nConnection: close\r\nHost: x\r\nContent-Length: nope\r\n\r\n{}');
    await raw(
      c.url,
      'POST /api/chat HTTP/1.1\r\nConnection: close\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model":',
      200,
    ); // then hang up mid-body
    const bad = await request(`${c.url}/balancer/admin/backends/b1/cordon`, {
      method: 'POST',
      body: '{not json',
      headers: { 'content-type': 'application/json' },
    });
    expect(bad.status).toBeGreaterThanOrEqual(400);
    noStackTrace(bad.text);
    const ok = await request(`${c.url}/api/generate`, { body: { model, prompt: 'still alive', stream: false } });
    expect(ok.status).toBe(200);
    expect(ok.body.done).toBe(true);
    await waitIdle(c.url);
  });
});

describe('client API keys, rate limits, model allow-lists', () => {
  let c: Cluster;
  const logged: string[] = [];
  let restore: () => void;
  beforeAll(async () => {
    const write = process.stdout.write.bind(process.stdout);
    (process.stdout as any).write = (chunk: any, ...rest: any[]) => {
      logged.push(String(chunk));
      return write(chunk, ...rest);
    };
    restore = () => ((process.stdout as any).write = write);
    c = await startCluster([{ tokensPerSecond: 1000 }], {
      API_KEYS: `alice:${ALICE}:0:${model},bob:${BOB}:3`,
      LOG_REQUESTS: 'true',
      LOG_LEVEL: 'log',
    });
  });
  afterAll(async () => {
    restore();
    await c.close();
  });

  it('the status view needs a client key when keys are configured and no admin token is', async () => {
    expect((await getJson(`${c.url}/balancer/status`)).status).toBe(401);
    expect((await getJson(`${c.url}/balancer/status`, { authorization: 'Bearer not-a-key' })).status).toBe(401);
    expect((await getJson(`${c.url}/balancer/status`, { authorization: `Bearer ${ALICE}` })).status).toBe(200);
  });

  it('missing or wrong key -> 401 in the right shape; Bearer and X-API-Key both work', async () => {
    const missing = await request(`${c.url}/api/chat`, { body: chat('hi', { stream: false }) });
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');
    expect(missing.body.error).toMatch(/missing API key/);
    const wrong = await request(`${c.url}/api/chat`, {
      body: chat('hi', { stream: false }),
      headers: { authorization: 'Bearer sk-nope-0123456789' },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toBe('invalid API key');
    const openai = await request(`${c.url}/v1/chat/completions`, {
      body: chat('hi'),
      headers: { authorization: 'Bearer wrong' },
    });
    expect(openai.status).toBe(401);
    expect(openai.body.error).toMatchObject({ type: 'authentication_error', param: null, code: null });
    const tags = await request(`${c.url}/api/tags`);
    expect(tags.status).toBe(401);
    // The bare liveness probe stays open.
    expect((await request(`${c.url}/`)).status).toBe(200);

    const bearer = await request(`${c.url}/api/chat`, {
      body: chat('hi', { stream: false }),
      headers: { authorization: `Bearer ${ALICE}` },
    });
    expect(bearer.status).toBe(200);
    const xkey = await request(`${c.url}/api/chat`, {
      body: chat('hi', { stream: false }),
      headers: { 'x-api-key': ALICE },
    });
    expect(xkey.status).toBe(200);
    const client = new OpenAI({ baseURL: `${c.url}/v1`, apiKey: ALICE, maxRetries: 0 });
    const done = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 3,
    });
    expect(done.choices[0].message.content?.length).toBeGreaterThan(0);
    await expect(
      new OpenAI({ baseURL: `${c.url}/v1`, apiKey: 'bad', maxRetries: 0 }).models.list(),
    ).rejects.toMatchObject({ status: 401 });
  });

  it('a model outside the key allow-list -> 403; over the rate -> 429 with Retry-After', async () => {
    const denied = await request(`${c.url}/api/embed`, {
      body: { model: 'nomic-embed-text', input: 'x' },
      headers: { authorization: `Bearer ${ALICE}` },
    });
    expect(denied.status).toBe(403);
    expect(denied.body.error).toMatch(/may not use model 'nomic-embed-text:latest'/);
    const deniedV1 = await request(`${c.url}/v1/embeddings`, {
      body: { model: 'nomic-embed-text', input: 'x' },
      headers: { authorization: `Bearer ${ALICE}` },
    });
    expect(deniedV1.status).toBe(403);
    expect(deniedV1.body.error.type).toBe('permission_error');
    // bob: 3 a minute, any model.
    const statuses: number[] = [];
    let limited: any;
    for (let i = 0; i < 5; i++) {
      const r = await request(`${c.url}/api/embed`, {
        body: { model: 'nomic-embed-text', input: `x${i}` },
        headers: { 'x-api-key': BOB },
      });
      statuses.push(r.status);
      if (r.status === 429) limited = r;
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(limited.body.error).toMatch(/rate limit of 3 requests per minute exceeded for key 'bob'/);
    const v1 = await request(`${c.url}/v1/embeddings`, {
      body: { model, input: 'x' },
      headers: { authorization: `Bearer ${BOB}` },
    });
    expect(v1.status).toBe(429);
    expect(v1.body.error.type).toBe('rate_limit_error');
    // alice is not affected by bob's limit.
    expect(
      (
        await request(`${c.url}/api/generate`, {
          body: { model, prompt: 'x', stream: false },
          headers: { authorization: `Bearer ${ALICE}` },
        })
      ).status,
    ).toBe(200);
  });

  it('secrets never appear in the logs (key names do)', async () => {
    await waitFor(() => logged.some((l) => l.includes('"key":"alice"')), 5000, 'a request line naming the key');
    const all = logged.join('');
    expect(all).not.toContain(ALICE);
    expect(all).not.toContain(BOB);
    expect(all).not.toContain('sk-nope');
  });
});

describe('admin endpoints and the shared status view', () => {
  it('with no ADMIN_TOKEN the admin API is off (403), whatever token is sent', async () => {
    const c = await startCluster([{}]);
    try {
      for (const headers of [
        {},
        { authorization: 'Bearer anything-at-all-123' },
        { authorization: `Bearer ${ADMIN}` },
      ] as Record<string, string>[]) {
        const r = await request(`${c.url}/balancer/admin/backends/b1/cordon`, { method: 'POST', headers });
        expect(r.status).toBe(403);
        expect(r.body.error).toMatch(/admin API is disabled/);
      }
      expect((await getJson(`${c.url}/balancer/status`)).body.backends[0].cordoned).toBe(false);
    } finally {
      await c.close();
    }
  });

  it('with ADMIN_TOKEN: 401 without or with a wrong token; cordon lets in-flight finish and sends new work elsewhere; uncordon', async () => {
    const auth = { authorization: `Bearer ${ADMIN}` };
    const sims = await startSims([{ tokensPerSecond: 20 }, { tokensPerSecond: 1000 }]);
    const b = await startBalancer({
      BALANCER_CONFIG: writeConfigFile({ backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url })) }),
      ADMIN_TOKEN: ADMIN,
      ROUTING_POLICY: 'round-robin',
    });
    const c = { url: b.url, close: async () => (await b.app.close(), await Promise.all(sims.map((s) => s.close()))) };
    await waitFor(
      async () =>
        (await getJson(`${c.url}/balancer/status`, auth)).body.backends.every(
          (x: any) => x.health === 'healthy' && x.inventoryAt !== null,
        ),
      10_000,
      'healthy',
    );
    try {
      expect((await request(`${c.url}/balancer/admin/backends/b1/cordon`, { method: 'POST' })).status).toBe(401);
      expect(
        (
          await request(`${c.url}/balancer/admin/backends/b1/cordon`, {
            method: 'POST',
            headers: { authorization: 'Bearer admin-token-wrong-0000' },
          })
        ).status,
      ).toBe(401);
      expect((await getJson(`${c.url}/balancer/status`)).status).toBe(401);
      expect(
        (await request(`${c.url}/balancer/admin/backends/nope/cordon`, { method: 'POST', headers: auth })).status,
      ).toBe(404);

      // A stream on b1 (round-robin's first pick), then cordon b1 while it runs.
      let onB1 = false;
      const stream = streamTimed(`${c.url}/api/chat`, chat('long', { options: { num_predict: 20 } }), () => undefined);
      await waitFor(
        async () => (onB1 = (await getJson(`${c.url}/balancer/status`, auth)).body.backends[0].inFlight === 1),
        5000,
        'stream on b1',
      );
      expect(onB1).toBe(true);
      const cordon = await request(`${c.url}/balancer/admin/backends/b1/cordon`, { method: 'POST', headers: auth });
      expect(cordon.status).toBe(200);
      expect(cordon.body).toMatchObject({ name: 'b1', cordoned: true, available: false });
      const st = (await getJson(`${c.url}/balancer/status`, auth)).body;
      expect(st.backends[0]).toMatchObject({ cordoned: true, inFlight: 1 });
      expect(st.events.some((e: any) => e.backend === 'b1' && e.event === 'cordoned')).toBe(true);
      for (let i = 0; i < 3; i++) {
        const r = await request(`${c.url}/api/generate`, { body: { model, prompt: `c${i}`, stream: false } });
        expect(r.headers['x-balancer-backend']).toBe('b2');
      }
      const s = await stream;
      expect(s.headers['x-balancer-backend']).toBe('b1');
      const lines = s.chunks
        .map((x) => x.text)
        .join('')
        .trim()
        .split('\n');
      expect(JSON.parse(lines[lines.length - 1]).done).toBe(true);

      const un = await request(`${c.url}/balancer/admin/backends/b1/uncordon`, { method: 'POST', headers: auth });
      expect(un.body).toMatchObject({ cordoned: false, available: true });
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++)
        seen.add(
          String(
            (await request(`${c.url}/api/generate`, { body: { model, prompt: `u${i}`, stream: false } })).headers[
              'x-balancer-backend'
            ],
          ),
        );
      expect(seen.has('b1')).toBe(true);
      await waitIdle(c.url, 10_000, auth);
    } finally {
      await c.close();
    }
  });
});

describe('MODEL_MANAGEMENT: who may pull, delete, copy, create, push and preload through the balancer', () => {
  it('off: every management route and a preload answer 403 in their shape; inference still works', async () => {
    const c = await startCluster([{ tokensPerSecond: 1000 }], { MODEL_MANAGEMENT: 'off' });
    try {
      const attempts: [string, string, unknown, Record<string, string>?][] = [
        ['POST', '/api/pull', { model: 'qwen2.5:0.5b' }],
        ['DELETE', '/api/delete', { model }],
        ['POST', '/api/copy', { source: model, destination: 'mine' }],
        ['POST', '/api/create', { model: 'mine', from: model }],
        ['POST', '/api/push', { model }],
        ['POST', '/api/generate', { model }, { 'x-balancer-backends': 'all' }],
        ['POST', '/api/generate', { model, keep_alive: 0 }],
      ];
      for (const [method, path, body, headers] of attempts) {
        const r = await request(`${c.url}${path}`, { method, body, headers });
        expect([path, r.status]).toEqual([path, 403]);
        expect(r.body.error).toMatch(/MODEL_MANAGEMENT=off/);
      }
      expect(c.sims[0].stats().pulls).toBe(0);
      expect((await getJson(`${c.url}/api/tags`)).body.models.map((m: any) => m.name)).toContain('llama3.2:latest');
      const ok = await request(`${c.url}/api/generate`, { body: { model, prompt: 'hi', stream: false } });
      expect(ok.status).toBe(200);
    } finally {
      await c.close();
    }
  });

  it('admin: only the admin token (not a client key) may manage models; clients keep inferring with their keys', async () => {
    const c = await startCluster([{ tokensPerSecond: 1000 }, { tokensPerSecond: 1000 }], {
      MODEL_MANAGEMENT: 'admin',
      ADMIN_TOKEN: ADMIN,
      API_KEYS: `alice:${ALICE}`,
    });
    try {
      const pull = { model: 'qwen2.5:0.5b', stream: false };
      const none = await request(`${c.url}/api/pull`, { body: pull });
      expect(none.status).toBe(401);
      expect(none.body.error).toMatch(/admin token/);
      const client = await request(`${c.url}/api/pull`, { body: pull, headers: { authorization: `Bearer ${ALICE}` } });
      expect(client.status).toBe(403);
      expect(client.body.error).toMatch(/not a client key/);
      const wrong = await request(`${c.url}/api/delete`, {
        method: 'DELETE',
        body: { model },
        headers: { authorization: 'Bearer not-the-admin-token' },
      });
      expect(wrong.status).toBe(401);
      expect(c.sims.map((x) => x.stats().pulls)).toEqual([0, 0]);

      const admin = await request(`${c.url}/api/pull`, { body: pull, headers: { authorization: `Bearer ${ADMIN}` } });
      expect(admin.status).toBe(200);
      expect(admin.body.status).toBe('success');
      expect(c.sims.map((x) => x.stats().pulls)).toEqual([1, 1]);
      const preload = await request(`${c.url}/api/generate`, {
        body: { model },
        headers: { authorization: `Bearer ${ADMIN}`, 'x-balancer-backends': 'b1' },
      });
      expect(preload.status).toBe(200);
      const clientStop = await request(`${c.url}/api/generate`, {
        body: { model, keep_alive: 0 },
        headers: { authorization: `Bearer ${ALICE}` },
      });
      expect(clientStop.status).toBe(403);
      const adminStop = await request(`${c.url}/api/generate`, {
        body: { model, keep_alive: 0 },
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      expect(adminStop.body).toMatchObject({ done: true, done_reason: 'unload' });
      // The admin token also works wherever a client key does.
      expect(
        (
          await request(`${c.url}/api/chat`, {
            body: chat('hi', { stream: false }),
            headers: { authorization: `Bearer ${ADMIN}` },
          })
        ).status,
      ).toBe(200);

      const chatOk = await request(`${c.url}/api/chat`, {
        body: chat('hi', { stream: false }),
        headers: { authorization: `Bearer ${ALICE}` },
      });
      expect(chatOk.status).toBe(200);
      const openai = await new OpenAI({ baseURL: `${c.url}/v1`, apiKey: ALICE }).chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'hi' }],
      });
      expect(openai.choices[0].message.content).toBeTruthy();
    } finally {
      await c.close();
    }
  });
});

describe('header hygiene and no client-chosen upstream', () => {
  /** Records what reached it; answers like Ollama for the model routes. */
  async function recorder(): Promise<{
    url: string;
    seen: http.IncomingHttpHeaders[];
    paths: string[];
    close(): Promise<void>;
  }> {
    const seen: http.IncomingHttpHeaders[] = [];
    const paths: string[] = [];
    const srv = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const send = (obj: unknown) => {
          const s = JSON.stringify(obj);
          res.writeHead(200, {
            'Content-Type': 'application/json; charset=utf-8',
            'Content-Length': Buffer.byteLength(s),
            Connection: 'X-Backend-Secret',
            'X-Backend-Secret': 'hop',
          });
          res.end(s);
        };
        if (req.url === '/api/version') return send({ version: '0.12.3' });
        if (req.url === '/api/tags')
          return send({
            models: [{ name: 'llama3.2:latest', model: 'llama3.2:latest', size: 1, digest: 'd', details: {} }],
          });
        if (req.url === '/api/ps') return send({ models: [] });
        seen.push(req.headers);
        paths.push(req.url ?? '');
        send({ model, created_at: new Date().toISOString(), response: 'ok', done: true, done_reason: 'stop' });
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return {
      url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
      seen,
      paths,
      close: () => new Promise<void>((r) => srv.close(() => r())),
    };
  }

  it('strips hop-by-hop headers and client credentials; sends the backend its own Host', async () => {
    const backend = await recorder();
    const b = await startBalancer({
      BALANCER_CONFIG: writeConfigFile({ backends: [{ name: 'only', url: backend.url }] }),
      API_KEYS: `alice:${ALICE}`,
    });
    try {
      await waitFor(
        async () =>
          (await getJson(`${b.url}/balancer/status`, { authorization: `Bearer ${ALICE}` })).body.backends[0]
            .inventoryAt !== null,
        5000,
        'inventory',
      );
      const r = await request(`${b.url}/api/generate`, {
        body: { model, prompt: 'x', stream: false },
        headers: {
          authorization: `Bearer ${ALICE}`,
          connection: 'keep-alive, X-Client-Secret',
          'x-client-secret': 'do-not-forward',
          'keep-alive': 'timeout=5',
          'proxy-authorization': 'Basic c2VjcmV0',
          te: 'trailers',
          host: 'evil.example:666',
          'x-request-id': 'req-123',
        },
      });
      expect(r.status).toBe(200);
      expect(r.headers['x-backend-secret']).toBeUndefined(); // named in the backend's Connection header
      const h = backend.seen[0];
      expect(h.authorization).toBeUndefined();
      expect(h['x-api-key']).toBeUndefined();
      expect(h['x-client-secret']).toBeUndefined();
      expect(h['keep-alive']).toBeUndefined();
      expect(h['proxy-authorization']).toBeUndefined();
      expect(h.te).toBeUndefined();
      expect(h.host).toBe(new URL(backend.url).host);
      expect(h['x-request-id']).toBe('req-123');
    } finally {
      await b.app.close();
    }
    // FORWARD_AUTHORIZATION=true is the one way a client's Authorization reaches a backend;
    // the balancer's own admin token never does.
    const b2 = await startBalancer({
      BALANCER_CONFIG: writeConfigFile({ backends: [{ name: 'only', url: backend.url }] }),
      FORWARD_AUTHORIZATION: 'true',
      ADMIN_TOKEN: ADMIN,
    });
    try {
      await waitFor(
        async () =>
          (await getJson(`${b2.url}/balancer/status`, { authorization: `Bearer ${ADMIN}` })).body.backends[0]
            .inventoryAt !== null,
        5000,
        'inventory',
      );
      await request(`${b2.url}/api/generate`, {
        body: { model, prompt: 'x', stream: false },
        headers: { authorization: 'Bearer for-ollama' },
      });
      expect(backend.seen[backend.seen.length - 1].authorization).toBe('Bearer for-ollama');
      await request(`${b2.url}/api/generate`, {
        body: { model, prompt: 'x', stream: false },
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      expect(backend.seen[backend.seen.length - 1].authorization).toBeUndefined();
      await request(`${b2.url}/api/copy`, {
        body: { source: model, destination: 'x' },
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      expect(backend.paths[backend.paths.length - 1]).toBe('/api/copy');
      expect(backend.seen[backend.seen.length - 1].authorization).toBeUndefined();
    } finally {
      await b2.app.close();
      await backend.close();
    }
  });

  it('no header, path or body field sends a request anywhere but a configured backend', async () => {
    const backend = await recorder();
    const evil = await recorder();
    const evilHost = new URL(evil.url).host;
    const b = await startBalancer({
      BALANCER_CONFIG: writeConfigFile({ backends: [{ name: 'only', url: backend.url }] }),
    });
    try {
      await waitFor(
        async () => (await getJson(`${b.url}/balancer/status`)).body.backends[0].inventoryAt !== null,
        5000,
        'inventory',
      );
      const body = JSON.stringify({
        model,
        prompt: 'x',
        stream: false,
        host: evil.url,
        url: evil.url,
        target: evil.url,
        backend: evil.url,
      });
      const len = Buffer.byteLength(body);
      const attempts = [
        // absolute-form request target naming another server
        `POST ${evil.url}/api/generate HTTP/1.1\r\nConnection: close\r\nHost: ${evilHost}\r\nContent-Type: application/json\r\nContent-Length: ${len}\r\n\r\n${body}`,
        // scheme-relative path
        `POST //${evilHost}/api/generate HTTP/1.1\r\nConnection: close\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${len}\r\n\r\n${body}`,
        // headers proxies sometimes honour
        `POST /api/generate HTTP/1.1\r\nConnection: close\r\nHost: ${evilHost}\r\nX-Forwarded-Host: ${evilHost}\r\nX-Balancer-Backends: ${evil.url}\r\nX-Balancer-Backend: ${evil.url}\r\nContent-Type: application/json\r\nContent-Length: ${len}\r\n\r\n${body}`,
        // path tricks
        `POST /api/../api/generate HTTP/1.1\r\nConnection: close\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${len}\r\n\r\n${body}`,
        `POST /api/generate?backend=${encodeURIComponent(evil.url)} HTTP/1.1\r\nConnection: close\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${len}\r\n\r\n${body}`,
      ];
      for (const a of attempts) {
        const text = await raw(b.url, a);
        expect(text).toMatch(/^HTTP\/1.1 \d{3}/);
        noStackTrace(text);
      }
      const preload = await request(`${b.url}/api/generate`, {
        body: { model },
        headers: { 'x-balancer-backends': evil.url },
      });
      expect(preload.status).toBeGreaterThanOrEqual(400);
      expect(evil.seen).toHaveLength(0);
      expect(backend.seen.length).toBeGreaterThanOrEqual(2);
      for (const p of backend.paths) expect(p.startsWith('/api/')).toBe(true);
    } finally {
      await b.app.close();
      await backend.close();
      await evil.close();
    }
  });
});

describe('CORS preflight', () => {
  it('is answered by a backend, so Ollama’s own origin rules apply, even with API keys on', async () => {
    const c = await startCluster([{ tokensPerSecond: 1000 }], { API_KEYS: 'web:web-key-123456' });
    try {
      const pre = await request(`${c.url}/api/chat`, {
        method: 'OPTIONS',
        headers: {
          origin: 'http://localhost:3000',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type,authorization',
        },
      });
      expect(pre.status).toBe(204);
      expect(pre.headers['access-control-allow-origin']).toBe('http://localhost:3000');
      expect(String(pre.headers['access-control-allow-methods'])).toContain('POST');
      const foreign = await request(`${c.url}/api/chat`, {
        method: 'OPTIONS',
        headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
      });
      expect(foreign.status).toBe(403);
      expect(foreign.headers['access-control-allow-origin']).toBeUndefined();
      // The real request's Access-Control-Allow-Origin passes through the proxy.
      const real = await request(`${c.url}/api/generate`, {
        body: { model: 'llama3.2', prompt: 'x', stream: false },
        headers: { origin: 'http://localhost:3000', authorization: 'Bearer web-key-123456' },
      });
      expect(real.status).toBe(200);
      expect(real.headers['access-control-allow-origin']).toBe('http://localhost:3000');
    } finally {
      await c.close();
    }
  });
});
