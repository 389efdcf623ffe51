import { createHash } from 'crypto';
import * as http from 'http';
import * as net from 'net';
import { SimServer } from '@app/ollama-sim';
import { loadBalancerConfig } from '../src/config/balancer-config';
import { OllamaClient } from '../src/fleet/ollama-client';
import { FakeOllama, selfSignedCert, startFakeOllama } from './fake-ollama';
import {
  Child,
  Cluster,
  getJson,
  parseStream,
  request,
  spawnBalancer,
  startCluster,
  startSims,
  streamTimed,
  waitFor,
  waitIdle,
  writeConfigFile,
} from './harness';

/**
 * One regression test per defect of issue 11 ("nothing a client sends can hurt the fleet"), each
 * failing on the code before its fix. Items are numbered as in the issue.
 */
const model = 'llama3.2';
const ALICE = 'sk-alice-0123456789';
const ADMIN = 'admin-token-0123456789';
const alice = { authorization: `Bearer ${ALICE}` };

/** Whether a string holds a UTF-16 surrogate without its pair (strict JSON parsers reject those). */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
function strictlyParsable(line: string): boolean {
  let ok = true;
  try {
    JSON.parse(line, (_k, v) => {
      if (typeof v === 'string' && LONE_SURROGATE.test(v)) ok = false;
      return v;
    });
  } catch {
    return false;
  }
  return ok;
}

/** waitFor that counts polls instead of reading the clock (for tests that freeze Date.now). */
async function waitPolls(cond: () => Promise<boolean> | boolean, polls: number, what: string): Promise<void> {
  for (let i = 0; i < polls; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`gave up after ${polls} polls waiting for ${what}`);
}

/** Raw bytes over one socket; resolves with whatever came back when the server closes, or at `giveUpMs`. */
function rawExchange(url: string, write: (s: net.Socket) => void, giveUpMs: number): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    let out = '';
    const s = net.connect(Number(u.port), u.hostname, () => write(s));
    const t = setTimeout(() => s.destroy(), giveUpMs);
    s.on('data', (c) => (out += c.toString('utf8')));
    s.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
    s.on('error', () => undefined);
  });
}

describe('the real process survives hostile bodies (items 1, 7, 17)', () => {
  let sims: SimServer[] = [];
  let child: Child | undefined;
  beforeAll(async () => {
    sims = await startSims([{ tokensPerSecond: 1000, loaded: [model] }]);
  });
  afterAll(async () => {
    if (child && child.proc.exitCode === null) child.proc.kill('SIGKILL');
    await Promise.all(sims.map((s) => s.close()));
  });
  /** A balancer process, restarted when an earlier test killed it (so each test stands alone). */
  async function alive(): Promise<Child> {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) {
      const live = await getJson(`${child.url}/health/live`).catch(() => null);
      if (live?.status === 200) return child;
      child.proc.kill('SIGKILL');
    }
    const file = writeConfigFile({ backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url })) });
    child = await spawnBalancer({ BALANCER_CONFIG: file, LOG_REQUESTS: 'true' });
    await waitFor(async () => (await getJson(`${child!.url}/health/ready`)).status === 200, 15_000, 'ready');
    return child;
  }

  it('item 1: values with their own toString (session key, pull, delete, model) never kill the process', async () => {
    const c = await alive();
    const hostile = { toString: 1 };
    const bodies: [string, string, unknown][] = [
      [
        'POST',
        '/api/chat',
        {
          model,
          stream: false,
          messages: [
            { role: 'system', content: hostile },
            { role: 'user', content: 'hi' },
          ],
        },
      ],
      ['POST', '/api/pull', { model: hostile }],
      ['DELETE', '/api/delete', { model: hostile }],
      ['POST', '/api/create', { model: hostile }],
      ['POST', '/api/copy', { source: hostile, destination: hostile }],
      ['POST', '/v1/chat/completions', { model: hostile, messages: [] }],
      ['POST', '/api/generate', { model, prompt: hostile, stream: false }],
    ];
    for (const [method, path, body] of bodies) {
      const r = await request(`${c.url}${path}`, { method, body }).catch((e: Error) => ({
        status: -1,
        error: e.message,
      }));
      expect({ path, status: r.status }).toEqual({ path, status: expect.any(Number) });
      expect(r.status).toBeGreaterThanOrEqual(200);
      expect(r.status).toBeLessThan(500);
    }
    // A malformed percent-encoding in a path is the client's error too, not the balancer's.
    const bad = await request(`${c.url}/v1/models/%E0%A4%A`);
    expect(bad.status).toBe(404);
    expect((await getJson(`${c.url}/health/live`)).status).toBe(200);
    expect(child!.proc.exitCode).toBeNull();
  }, 120_000);

  it('item 7: deeply nested JSON is refused with 400 before it is parsed (chat and pull)', async () => {
    const c = await alive();
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const chat = `{"model":"${model}","stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"x":${deep(100_000)}}}`;
    const r1 = await request(`${c.url}/api/chat`, { body: chat });
    expect(r1.status).toBe(400);
    expect(r1.body.error).toMatch(/nest/i);
    const pull = `{"model":"x","insecure":${deep(100_000)}}`;
    const r2 = await request(`${c.url}/api/pull`, { body: pull });
    expect(r2.status).toBe(400);
    expect(r2.body.error).toMatch(/nest/i);
    const oai = await request(`${c.url}/v1/chat/completions`, {
      body: `{"model":"${model}","messages":${deep(50_000)}}`,
    });
    expect(oai.status).toBe(400);
    expect(oai.body.error.type).toBe('invalid_request_error');
    expect((await getJson(`${c.url}/health/live`)).status).toBe(200);
  }, 120_000);

  it('item 17: a lone surrogate in a model name still gives a request log line strict JSON parsers accept', async () => {
    const c = await alive();
    const before = c.output().length;
    const r = await request(`${c.url}/api/generate`, { body: '{"model":"\\ud800x","prompt":"hi","stream":false}' });
    expect(r.status).toBe(404);
    await waitFor(() => /"event":"request"/.test(c.output().slice(before)), 5000, 'the request log line');
    const lines = c
      .output()
      .slice(before)
      .split('\n')
      .filter((l) => l.includes('"event":"request"'));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(strictlyParsable(l)).toBe(true);
  }, 120_000);
});

describe('found by fuzzing: an unsupported Expect on the wire; a 404 naming another model', () => {
  let sims: SimServer[] = [];
  let child: Child | undefined;
  beforeAll(async () => {
    sims = await startSims([
      { tokensPerSecond: 1000, loaded: [model] },
      { tokensPerSecond: 1000, loaded: [model] },
    ]);
    const file = writeConfigFile({ backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url })) });
    // One inventory poll at start, none during the tests: what the balancer knows comes from answers.
    child = await spawnBalancer({ BALANCER_CONFIG: file, INVENTORY_INTERVAL_MS: '600000' });
    await waitFor(async () => (await getJson(`${child!.url}/health/ready`)).status === 200, 15_000, 'ready');
  });
  afterAll(async () => {
    if (child && child.proc.exitCode === null) child.proc.kill('SIGKILL');
    await Promise.all(sims.map((s) => s.close()));
  });
  const chat = `{"model":"${model}","messages":[{"role":"user","content":"hi"}],"stream":false}`;
  const post = (path: string, extra: string, body: string) =>
    `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const tags = 'GET /api/tags HTTP/1.1\r\nHost: x\r\n\r\n';

  // Seed 1200001, index 872: Node's own 417 kept the connection of an Upgrade request open, and
  // its parser reads nothing after an Upgrade: the request pipelined behind it waited for ever.
  it('an Upgrade with Expect: nonsense gets 417 in the error shape and its connection closes', async () => {
    const headers = 'Upgrade: foo\r\nConnection: upgrade\r\nExpect: nonsense\r\n';
    let closedByServer = false;
    const out = await rawExchange(
      child!.url,
      (s) => {
        s.on('end', () => (closedByServer = true));
        s.write(tags + post('/api/chat', headers, chat) + tags);
      },
      20_000,
    );
    const heads = out.match(/HTTP\/1\.1 \d+/g);
    expect(heads).toEqual(['HTTP/1.1 200', 'HTTP/1.1 417']);
    expect(out).toMatch(/HTTP\/1\.1 417[^]*Connection: close\r\n[^]*\{"error":"expectation failed: [^"]+"\}$/);
    expect(closedByServer).toBe(true);
  }, 60_000);

  it('without Upgrade: 417 in the route error shape (OpenAI on /v1), and the connection serves what follows', async () => {
    const out = await rawExchange(
      child!.url,
      (s) =>
        s.write(
          post('/v1/chat/completions', 'Expect: nonsense\r\n', chat) +
            tags +
            tags.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'),
        ),
      20_000,
    );
    expect(out.match(/HTTP\/1\.1 \d+/g)).toEqual(['HTTP/1.1 417', 'HTTP/1.1 200', 'HTTP/1.1 200']);
    const body417 = out.split('\r\n\r\n')[1].split('HTTP/1.1')[0];
    expect(JSON.parse(body417).error.message).toMatch(/expectation failed/);
  }, 60_000);

  // Seed 3100010, index 113: {"MoDEl":"Llama3.2:Latest","name":"a\udc00b",...} on /api/embed. The
  // balancer routes on the model key (case-insensitive, as Go reads it); the simulator read `name`
  // and answered 404 model 'a\udc00b' not found; the balancer took that for llama3.2's absence and
  // forgot it on every backend it tried: the model vanished fleet-wide until the next poll.
  it('a backend 404 that names another model does not make the routed model vanish', async () => {
    const r = await request(`${child!.url}/api/embed`, {
      body: '{"input":["a"],"MoDEl":"llama3.2","name":"no-such-model"}',
    });
    expect(r.status).toBe(404);
    expect(r.body.error).toBe("model 'no-such-model' not found");
    const st = (await getJson(`${child!.url}/balancer/status`)).body;
    for (const b of st.backends) expect(b.models).toContain('llama3.2:latest');
    const gen = await request(`${child!.url}/api/generate`, { body: { model, prompt: 'hi', stream: false } });
    expect(gen.status).toBe(200);
  }, 60_000);
});

describe('a log reader that goes away', () => {
  let sims: SimServer[] = [];
  let child: Child | undefined;
  beforeAll(async () => {
    sims = await startSims([{ tokensPerSecond: 1000, loaded: [model] }]);
  });
  afterAll(async () => {
    if (child && child.proc.exitCode === null) child.proc.kill('SIGKILL');
    await Promise.all(sims.map((s) => s.close()));
  });

  // Found when a fuzz runner died and left its balancer behind: every log write failed with EPIPE,
  // each failure was an uncaught exception whose own log line failed again, and the process spun
  // at full CPU answering nothing (not /health/live within 30 s) while still looking alive.
  it('a closed stdout and stderr (EPIPE) do not stop the serving', async () => {
    const file = writeConfigFile({ backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url })) });
    child = await spawnBalancer({ BALANCER_CONFIG: file, LOG_REQUESTS: 'true' });
    await waitFor(async () => (await getJson(`${child!.url}/health/ready`)).status === 200, 15_000, 'ready');
    child.proc.stdout!.destroy();
    child.proc.stderr!.destroy();
    for (let i = 0; i < 5; i++) {
      const r = await request(`${child.url}/api/generate`, { body: { model, prompt: 'hi', stream: false } });
      expect(r.status).toBe(200);
    }
    expect((await getJson(`${child.url}/health/live`)).status).toBe(200);
    expect(child.proc.exitCode).toBeNull();
  }, 120_000);
});

describe('items answered by an in-process cluster', () => {
  let cluster: Cluster | undefined;
  const fakes: FakeOllama[] = [];
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
    await Promise.all(fakes.splice(0).map((f) => f.close()));
  });

  it('item 2: a route a backend lacks (404 page not found) does not make the model vanish fleet-wide', async () => {
    // Servers new enough by version to be asked, that still answer Gin's 404 for the route.
    for (let i = 0; i < 2; i++) fakes.push(await startFakeOllama({ version: '0.20.0' }));
    const file = writeConfigFile({ backends: fakes.map((f, i) => ({ name: `b${i + 1}`, url: f.url })) });
    cluster = await startClusterOn(file, { INVENTORY_INTERVAL_MS: '600000' });
    const m = await request(`${cluster.url}/v1/messages`, {
      body: { model, max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(m.status).toBe(404);
    expect(fakes.every((f) => f.seen.includes('POST /v1/messages'))).toBe(true);
    const st = (await getJson(`${cluster.url}/balancer/status`)).body;
    for (const b of st.backends) expect(b.models).toContain('llama3.2:latest');
    expect(st.counters.ejections).toBe(0);
    const r = await request(`${cluster.url}/api/chat`, {
      body: { model, stream: false, messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(r.status).toBe(200);
  });

  it('item 3: a waiter queued in the same millisecond a slot frees is served', async () => {
    cluster = await startCluster(
      [{ tokensPerSecond: 50, numParallel: 1, loaded: [model] }],
      { QUEUE_TIMEOUT_MS: '3000' },
      [{ parallel: 1 }],
    );
    const u = cluster.url;
    // Every event below happens "in the same millisecond" as far as the balancer can tell.
    const frozen = Date.now();
    const spy = jest.spyOn(Date, 'now').mockImplementation(() => frozen);
    try {
      let started = false;
      const first = streamTimed(
        `${u}/api/generate`,
        { model, prompt: 'first', options: { num_predict: 10 } },
        () => (started = true),
      );
      await waitPolls(() => started, 400, 'the first request holding the only slot');
      const second = request(`${u}/api/generate`, {
        body: { model, prompt: 'second', stream: false, options: { num_predict: 2 } },
      });
      await waitPolls(
        async () => (await getJson(`${u}/balancer/status`)).body.queue.length === 1,
        200,
        'the second request queued',
      );
      expect((await first).status).toBe(200);
      const r = await second;
      expect(r.status).toBe(200);
    } finally {
      spy.mockRestore();
    }
  }, 60_000);

  it('item 4: every backend down, a model never seen: 503 with Retry-After, not 404', async () => {
    cluster = await startCluster([{ tokensPerSecond: 1000 }], { HEALTH_FAILURE_THRESHOLD: '1' });
    await cluster.sims[0].update({ faults: { refuseConnections: true } });
    await waitFor(
      async () => (await getJson(`${cluster!.url}/balancer/status`)).body.backends[0].health === 'unhealthy',
      10_000,
      'backend down',
    );
    const r = await request(`${cluster.url}/api/generate`, { body: { model: 'never-seen:1b', prompt: 'x' } });
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBeDefined();
  });

  it('item 15: a request queued behind an overdue one goes to an idle backend holding the model', async () => {
    const models = [{ name: 'llama3.2:latest', sizeBytes: 100_000_000 }];
    cluster = await startCluster(
      [
        { tokensPerSecond: 200, numParallel: 1, models, loaded: [model], defaultOutputTokens: 2 },
        { tokensPerSecond: 200, numParallel: 1, models, defaultOutputTokens: 2 },
      ],
      { QUEUE_TIMEOUT_MS: '5000' },
      [{ parallel: 1 }, { parallel: 1 }],
    );
    const u = cluster.url;
    // Learn that requests are short on the warm backend.
    for (let i = 0; i < 5; i++) {
      const r = await request(`${u}/api/generate`, { body: { model, prompt: 'short', stream: false } });
      expect(r.headers['x-balancer-backend']).toBe('b1');
    }
    // Now b1 is much slower than learned: one request overruns its prediction by far.
    await cluster.sims[0].update({ tokensPerSecond: 5, defaultOutputTokens: 30 });
    let started = false;
    const long = streamTimed(`${u}/api/generate`, { model, prompt: 'long' }, () => (started = true));
    await waitFor(() => started, 10_000, 'the long request under way');
    await new Promise((r) => setTimeout(r, 1000));
    const next = await request(`${u}/api/generate`, {
      body: { model, prompt: 'next', stream: false, options: { num_predict: 2 } },
    });
    expect(next.status).toBe(200);
    expect(next.headers['x-balancer-backend']).toBe('b2');
    await long;
  }, 60_000);

  it('item 5: case-variant keys cannot bypass a key allow-list or the management pins', async () => {
    cluster = await startCluster(
      [
        {
          tokensPerSecond: 1000,
          models: [
            { name: 'llama3.2:latest', sizeBytes: 1e9 },
            { name: 'qwen2.5:7b', sizeBytes: 1e9 },
          ],
        },
      ],
      {
        API_KEYS: `alice:${ALICE}:0:${model}`,
        ADMIN_TOKEN: ADMIN,
        MODEL_MANAGEMENT: 'admin',
      },
    );
    const variant = await request(`${cluster.url}/api/generate`, {
      headers: alice,
      body: '{"model":"llama3.2","MODEL":"qwen2.5:7b","prompt":"hi","stream":false}',
    });
    expect([400, 403]).toContain(variant.status);
    const only = await request(`${cluster.url}/api/generate`, {
      headers: alice,
      body: '{"Model":"qwen2.5:7b","prompt":"hi","stream":false}',
    });
    expect(only.status).toBe(403);
    // Ollama reads KEEP_ALIVE as keep_alive: an unload in disguise still needs the admin token.
    const unload = await request(`${cluster.url}/api/generate`, {
      headers: alice,
      body: '{"model":"llama3.2","Keep_Alive":0}',
    });
    expect([400, 401, 403]).toContain(unload.status);
    const prompt = await request(`${cluster.url}/api/generate`, {
      headers: alice,
      body: '{"model":"llama3.2","keep_alive":0,"prompt":"hi","PROMPT":""}',
    });
    expect([400, 401, 403]).toContain(prompt.status);
  });

  it('item 9: an https backend is probed over TLS (healthy, inventory read); default ports follow the scheme', async () => {
    const tls = selfSignedCert();
    fakes.push(await startFakeOllama({ tls }));
    const file = writeConfigFile({ backends: [{ name: 'tls', url: fakes[0].url }] });
    cluster = await startClusterOn(file, { BACKEND_CA_FILE: tls.certPath });
    const st = (await getJson(`${cluster.url}/balancer/status`)).body;
    expect(st.backends[0].models).toEqual(['llama3.2:latest']);
    expect(fakes[0].seen).toContain('GET /api/version');
    // An explicit :80 stays 80; a scheme without a port means the scheme's port; a bare host is Ollama's 11434.
    const cfg = loadBalancerConfig({ OLLAMA_BACKENDS: 'http://gpu1:80,https://gpu2,gpu3,http://gpu4:8080,gpu5:80' });
    const ports = cfg.backends.map((b) => {
      const u = new URL(b.url);
      return u.port || (u.protocol === 'https:' ? '443' : '80');
    });
    expect(ports).toEqual(['80', '443', '11434', '8080', '80']);
    // The outbound client dials 443 for https without a port (not 80).
    // (Nothing listens on 443 here: the refusal names the port that was dialled.)
    const client = new OllamaClient(loadBalancerConfig({}));
    const e: any = await client
      .request(new URL('https://127.0.0.1'), '/api/version', { timeoutMs: 2000 })
      .catch((err: unknown) => err);
    client.onApplicationShutdown();
    expect({ code: e?.code, port: e?.port }).toEqual({ code: 'ECONNREFUSED', port: 443 });
  }, 60_000);

  it('item 6: a key limited to one model cannot copy, delete, create from or pull others', async () => {
    cluster = await startCluster(
      [
        {
          tokensPerSecond: 1000,
          models: [
            { name: 'llama3.2:latest', sizeBytes: 1e9 },
            { name: 'qwen2.5:7b', sizeBytes: 1e9 },
          ],
        },
      ],
      { API_KEYS: `alice:${ALICE}:0:${model}` },
    );
    const u = cluster.url;
    const tries: [string, string, unknown][] = [
      ['POST', '/api/copy', { source: 'qwen2.5:7b', destination: model }],
      ['POST', '/api/copy', { source: model, destination: 'qwen2.5:7b' }],
      ['DELETE', '/api/delete', { model: 'qwen2.5:7b' }],
      ['POST', '/api/create', { model, from: 'qwen2.5:7b', stream: false }],
      ['POST', '/api/create', { model: 'other:1b', from: model, stream: false }],
      ['POST', '/api/pull', { model: 'mistral:7b', stream: false }],
      ['POST', '/api/push', { model: 'qwen2.5:7b', stream: false }],
    ];
    for (const [method, path, body] of tries) {
      const r = await request(`${u}${path}`, { method, body, headers: alice });
      expect({ path, body, status: r.status }).toEqual({ path, body, status: 403 });
    }
    const st = (await getJson(`${u}/balancer/status`, alice)).body;
    expect(st.backends[0].models).toEqual(['llama3.2:latest', 'qwen2.5:7b']);
  });

  it('item 8: a non-streamed generate past the headers timeout is not started again elsewhere (504)', async () => {
    let generates = 0;
    for (let i = 0; i < 3; i++) {
      fakes.push(
        await startFakeOllama({
          handle: (req) => {
            if (req.url !== '/api/generate') return false;
            generates++;
            return true; // never answers: a long generation
          },
        }),
      );
    }
    const file = writeConfigFile({ backends: fakes.map((f, i) => ({ name: `b${i + 1}`, url: f.url })) });
    cluster = await startClusterOn(file, { HEADERS_TIMEOUT_MS: '1000' });
    const r = await request(`${cluster.url}/api/generate`, { body: { model, prompt: 'a long essay', stream: false } });
    expect(r.status).toBe(504);
    expect(generates).toBe(1);
  }, 60_000);

  it('item 9: a model request to an https backend is proxied over TLS', async () => {
    const tls = selfSignedCert();
    fakes.push(await startFakeOllama({ tls }));
    const file = writeConfigFile({ backends: [{ name: 'tls', url: fakes[0].url }] });
    cluster = await startClusterOn(file, { BACKEND_CA_FILE: tls.certPath });
    const r = await request(`${cluster.url}/api/generate`, { body: { model, prompt: 'hi', stream: false } });
    expect(r.status).toBe(200);
    expect(r.body.response).toBe('ok');
  }, 60_000);

  it('item 10: probes do not queue behind long fan-outs: a dead backend is seen as down during a long pull', async () => {
    cluster = await startCluster([{ tokensPerSecond: 1000, pullMs: 30_000 }, { tokensPerSecond: 1000 }], {
      HEALTH_FAILURE_THRESHOLD: '2',
      HEALTH_TIMEOUT_MS: '300',
    });
    const u = cluster.url;
    // Fill b1's control pool with long pulls (more than its sockets).
    const pulls = Array.from({ length: 20 }, (_, i) => {
      const req = http.request(`${u}/api/pull?backends=b1`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
      });
      req.on('error', () => undefined);
      req.on('response', (res) => res.resume());
      req.end(JSON.stringify({ model: `m${i}:1b` }));
      return req;
    });
    try {
      await waitFor(() => cluster!.sims[0].stats().byRoute['POST /api/pull'] >= 16, 10_000, 'pulls under way');
      await cluster.sims[0].update({ faults: { hang: true } });
      await waitFor(
        async () => (await getJson(`${u}/balancer/status`)).body.backends[0].health === 'unhealthy',
        8000,
        'b1 seen down',
      );
    } finally {
      for (const p of pulls) p.destroy();
    }
  }, 60_000);

  it('item 11: clients that stop reading do not get a backend ejected', async () => {
    for (let i = 0; i < 2; i++) {
      fakes.push(
        await startFakeOllama({
          handle: (req, _body, res) => {
            if (req.url !== '/api/generate') return false;
            res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
            const line = JSON.stringify({ model, response: 'x'.repeat(200), done: false }) + '\n';
            const chunk = line.repeat(300);
            let sent = 0;
            const pump = () => {
              while (sent < 64 * 1024 * 1024) {
                sent += chunk.length;
                if (!res.write(chunk)) return void res.once('drain', pump);
              }
              res.end(JSON.stringify({ model, response: '', done: true }) + '\n');
            };
            pump();
            return true;
          },
        }),
      );
    }
    const file = writeConfigFile({ backends: fakes.map((f, i) => ({ name: `b${i + 1}`, url: f.url })) });
    cluster = await startClusterOn(file, {
      IDLE_STREAM_TIMEOUT_MS: '1000',
      EJECT_CONSECUTIVE_FAILURES: '1',
      EJECT_MAX_PERCENT: '50',
    });
    const u = new URL(cluster.url);
    const readers = [0, 1].map(
      () =>
        new Promise<void>((resolve) => {
          const req = http.request(
            {
              hostname: u.hostname,
              port: u.port,
              path: '/api/generate',
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              agent: false,
            },
            (res) => {
              res.pause(); // never reads again
              res.socket.pause();
              res.on('close', resolve);
            },
          );
          req.on('error', () => resolve());
          req.end(JSON.stringify({ model, prompt: 'a lot' }));
          setTimeout(() => {
            req.destroy();
            resolve();
          }, 8000).unref();
        }),
    );
    await new Promise((r) => setTimeout(r, 4000));
    const st = (await getJson(`${cluster.url}/balancer/status`)).body;
    await Promise.all(readers);
    expect(st.counters.ejections).toBe(0);
    expect(st.backends.every((b: any) => !b.ejected)).toBe(true);
  }, 60_000);

  it('item 11: a 500 caused by one request content, failing on every backend, ejects none', async () => {
    for (let i = 0; i < 3; i++) {
      fakes.push(
        await startFakeOllama({
          handle: (req, body, res) => {
            if (req.url !== '/api/generate' || !body.toString().includes('poison')) return false;
            const text = JSON.stringify({ error: 'template: :1:2: executing "" at <.Poison>: error calling poison' });
            res.writeHead(500, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
            res.end(text);
            return true;
          },
        }),
      );
    }
    const file = writeConfigFile({ backends: fakes.map((f, i) => ({ name: `b${i + 1}`, url: f.url })) });
    cluster = await startClusterOn(file, { EJECT_CONSECUTIVE_FAILURES: '3' });
    for (let i = 0; i < 3; i++) {
      const r = await request(`${cluster.url}/api/generate`, { body: { model, prompt: `poison ${i}`, stream: false } });
      expect(r.status).toBe(500);
    }
    const st = (await getJson(`${cluster.url}/balancer/status`)).body;
    expect(st.counters.ejections).toBe(0);
  });

  it('item 12: /api/show takes no slot and waits in no queue, and does not mark the model loaded', async () => {
    cluster = await startCluster(
      [{ tokensPerSecond: 20, numParallel: 1 }],
      { QUEUE_TIMEOUT_MS: '500', INVENTORY_INTERVAL_MS: '600000' },
      [{ parallel: 1 }],
    );
    const u = cluster.url;
    const show = await request(`${u}/api/show`, { body: { model } });
    expect(show.status).toBe(200);
    let st = (await getJson(`${u}/balancer/status`)).body;
    expect(st.backends[0].loaded.map((m: any) => m.name)).not.toContain('llama3.2:latest');
    let started = false;
    const long = streamTimed(
      `${u}/api/generate`,
      { model, prompt: 'long', options: { num_predict: 60 } },
      () => (started = true),
    );
    await waitFor(() => started, 10_000, 'a generation holding the only slot');
    const during = await request(`${u}/api/show`, { body: { model } });
    expect(during.status).toBe(200);
    st = (await getJson(`${u}/balancer/status`)).body;
    expect(st.counters.queued).toBe(0);
    await long;
  }, 60_000);

  it('item 13: the balancer own answers (merged views and errors) carry CORS headers for allowed origins', async () => {
    cluster = await startCluster([{ tokensPerSecond: 1000 }]);
    const origin = { origin: 'http://localhost:5173' };
    for (const [path, body] of [
      ['/api/tags'],
      ['/api/ps'],
      ['/api/version'],
      ['/v1/models'],
      ['/api/generate', { model: 'nope:1b', prompt: 'x' }],
      ['/api/generate', '{'],
    ] as [string, unknown?][]) {
      const r = await request(`${cluster.url}${path}`, { headers: origin, body });
      expect({ path, acao: r.headers['access-control-allow-origin'] }).toEqual({ path, acao: 'http://localhost:5173' });
    }
    const other = await request(`${cluster.url}/api/tags`, { headers: { origin: 'https://evil.example' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('item 14: a blob larger than MAX_BODY_BYTES is streamed to the backends (201), not refused with 413', async () => {
    cluster = await startCluster([{ tokensPerSecond: 1000 }, { tokensPerSecond: 1000 }], { MAX_BODY_BYTES: '4096' });
    const blob = Buffer.alloc(256 * 1024, 7);
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    const r = await request(`${cluster.url}/api/blobs/${digest}`, {
      method: 'POST',
      body: blob,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(r.status).toBe(201);
    const head = await request(`${cluster.url}/api/blobs/${digest}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
  });

  it('item 14: the bodies held at once are bounded across requests (BODY_MEMORY_BYTES): 503, then room again', async () => {
    cluster = await startCluster([{ tokensPerSecond: 1000 }], {
      MAX_BODY_BYTES: String(48 * 1024),
      BODY_MEMORY_BYTES: String(64 * 1024),
    });
    const u = new URL(cluster.url);
    const prompt = 'x'.repeat(40 * 1024);
    const body = JSON.stringify({ model, prompt, stream: false });
    // A client that sent most of a 40 KiB body and holds the rest back.
    const holder = net.connect(Number(u.port), u.hostname);
    await new Promise((r) => holder.once('connect', r));
    holder.write(
      `POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, -10)}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    const second = await request(`${cluster.url}/api/generate`, { body });
    expect(second.status).toBe(503);
    expect(second.headers['retry-after']).toBeDefined();
    expect(second.body.error).toMatch(/BODY_MEMORY_BYTES/);
    holder.destroy();
    await waitFor(
      async () => (await request(`${cluster!.url}/api/generate`, { body })).status === 200,
      10_000,
      'room again once the first client left',
    );
  });

  it('item 17: a body sent one byte at a time is cut with 408 after BODY_TIMEOUT_MS', async () => {
    cluster = await startCluster([{ tokensPerSecond: 1000 }], { BODY_TIMEOUT_MS: '500' });
    const body = JSON.stringify({ model, prompt: 'x'.repeat(40), stream: false });
    let timer: NodeJS.Timeout | undefined;
    const out = await rawExchange(
      cluster.url,
      (s) => {
        s.write(
          `POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
        );
        let i = 0;
        timer = setInterval(() => {
          if (i < body.length && !s.destroyed) s.write(body[i++]);
        }, 100);
      },
      10_000,
    );
    clearInterval(timer);
    expect(out).toMatch(/^HTTP\/1\.1 408/);
    expect(out).toMatch(/"error"/);
  }, 30_000);
});

describe('item 16: drain waits for fan-outs', () => {
  let sims: SimServer[] = [];
  let child: Child | undefined;
  afterEach(async () => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
    await Promise.all(sims.map((s) => s.close()));
  });

  it('item 16: a pull under way when SIGTERM comes finishes (success line) before the process exits', async () => {
    sims = await startSims([{ tokensPerSecond: 1000, pullMs: 4000 }]);
    const file = writeConfigFile({ backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url })) });
    child = await spawnBalancer({ BALANCER_CONFIG: file, LOG_REQUESTS: 'false', DRAIN_TIMEOUT_MS: '20000' });
    await waitFor(async () => (await getJson(`${child!.url}/health/ready`)).status === 200, 15_000, 'ready');
    let started = false;
    const pull = streamTimed(`${child.url}/api/pull`, { model: 'mistral:7b' }, () => (started = true));
    await waitFor(() => started, 10_000, 'pull under way');
    child.proc.kill('SIGTERM');
    const s = await pull;
    const objs = parseStream(s.chunks.map((c) => c.text).join(''));
    expect(objs[objs.length - 1]).toEqual({ status: 'success' });
    expect(await child.exited).toBe(0);
  }, 60_000);
});

/** A cluster over a prepared config file (fake backends), ready when every backend is healthy. */
async function startClusterOn(file: string, env: Record<string, string>): Promise<Cluster> {
  const { startBalancer } = await import('./harness');
  const { app, url } = await startBalancer({ BALANCER_CONFIG: file, ...env });
  try {
    await waitFor(
      async () =>
        (await getJson(`${url}/balancer/status`)).body.backends.every(
          (b: any) => b.health === 'healthy' && b.inventoryAt !== null,
        ),
      10_000,
      'backends healthy',
    );
  } catch (e) {
    await app.close();
    throw e;
  }
  return { app, url, sims: [], close: () => app.close() };
}

void waitIdle;
