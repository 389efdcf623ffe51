import * as http from 'http';
import { AddressInfo } from 'net';
import { startSimServer, SimServer } from '@app/ollama-sim';
import {
  Child,
  Cluster,
  getJson,
  parseStream,
  request,
  sleep,
  spawnSim,
  startBalancer,
  startCluster,
  streamTimed,
  waitFor,
  waitIdle,
  writeConfigFile,
} from './harness';

/**
 * Fault injection over simulated backends: what a client sees when a backend dies, hangs, answers
 * busy, stalls mid-stream or flaps, and proof that every count returns to zero afterwards.
 */
const model = 'llama3.2';
const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content }],
  ...extra,
});

interface Outcome {
  kind: 'ndjson' | 'sse' | 'json';
  status: number;
  backend: string;
  attempts: number;
  /** The client had received at least one body byte when the backend was killed. */
  startedBeforeKill: boolean;
  objects: any[];
  text: string;
}

/** One request that remembers whether its body had begun before `mark()` was called. */
function tracked(
  url: string,
  path: string,
  body: unknown,
  kind: Outcome['kind'],
  marks: { killed: boolean },
  onFirstByte: (backend: string) => void,
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const u = new URL(url + path);
    let text = '';
    let startedBeforeKill = false;
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
        const backend = String(res.headers['x-balancer-backend'] ?? '');
        res.on('data', (c: Buffer) => {
          if (text === '') {
            if (!marks.killed) startedBeforeKill = true;
            onFirstByte(backend);
          }
          text += c.toString('utf8');
        });
        const done = () =>
          resolve({
            kind,
            status: res.statusCode ?? 0,
            backend,
            attempts: Number(res.headers['x-balancer-attempts'] ?? 1),
            startedBeforeKill,
            objects: parseStream(text),
            text,
          });
        res.on('end', done);
        res.on('error', done);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** A request whose client can hang up at any moment (before any byte came back). */
function openRequest(
  url: string,
  body: unknown,
): {
  req: http.ClientRequest;
  result: Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string } | 'aborted'>;
} {
  const u = new URL(url);
  let req!: http.ClientRequest;
  const result = new Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string } | 'aborted'>(
    (resolve) => {
      req = http.request(
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
          res.on('data', (c: Buffer) => (text += c.toString('utf8')));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
          res.on('error', () => resolve('aborted'));
        },
      );
      req.on('error', () => resolve('aborted'));
      req.end(JSON.stringify(body));
    },
  );
  return { req, result };
}

const status = async (url: string) => (await getJson(`${url}/balancer/status`)).body;

function expectComplete(o: Outcome): void {
  expect(o.status).toBe(200);
  if (o.kind === 'json') expect(o.objects[0]?.done).toBe(true);
  else if (o.kind === 'ndjson') {
    expect(o.objects[o.objects.length - 1]?.done).toBe(true);
    expect(o.objects.some((x) => x.error !== undefined)).toBe(false);
  } else expect(o.objects[o.objects.length - 1]).toBe('[DONE]');
}

describe('faults: a backend killed (SIGKILL) during a run of concurrent requests', () => {
  let sims: SimServer[] = [];
  let child: Child | undefined;
  let app: { close(): Promise<void> } | undefined;
  afterAll(async () => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
    await app?.close();
    await Promise.all(sims.map((s) => s.close()));
  });

  it('retries every request that had not started streaming, ends the started ones with an error line, counts return to zero', async () => {
    sims = await Promise.all(
      [1, 2].map((i) =>
        startSimServer({ name: `sim${i}`, port: 0, tokensPerSecond: 40, numParallel: 16, loaded: [model] }),
      ),
    );
    // b3 runs two answers at a time; the rest of what it was given waits inside it, headers unsent.
    child = await spawnSim({ name: 'victim', tokensPerSecond: 40, numParallel: 2, loaded: [model] });
    const file = writeConfigFile({
      backends: [
        { name: 'b1', url: sims[0].url, modelConcurrency: 16 },
        { name: 'b2', url: sims[1].url, modelConcurrency: 16 },
        { name: 'b3', url: child.url, modelConcurrency: 16 },
      ],
    });
    // Resuming broken streams off: this is the error-line contract (resume.e2e-spec.ts covers it on).
    const b = await startBalancer({
      BALANCER_CONFIG: file,
      ROUTING_POLICY: 'round-robin',
      HEALTH_INTERVAL_MS: '200',
      RETRY_BUDGET_RATIO: '1',
      STREAM_RESUME: 'off',
    });
    app = b.app;
    const url = b.url;
    await waitFor(
      async () => (await status(url)).backends.every((x: any) => x.health === 'healthy' && x.inventoryAt !== null),
      10_000,
      'healthy',
    );

    const marks = { killed: false };
    let b3Started = 0;
    const onFirst = (backend: string) => {
      if (backend === 'b3') b3Started++;
    };
    const runs: Promise<Outcome>[] = [];
    for (let i = 0; i < 30; i++) {
      const n = 40 + (i % 5) * 10; // 1 to 2 s of tokens
      if (i % 3 === 0)
        runs.push(
          tracked(url, '/api/chat', chat(`stream ${i}`, { options: { num_predict: n } }), 'ndjson', marks, onFirst),
        );
      else if (i % 3 === 1)
        runs.push(
          tracked(
            url,
            '/api/generate',
            { model, prompt: `whole ${i}`, stream: false, options: { num_predict: 20 } },
            'json',
            marks,
            onFirst,
          ),
        );
      else
        runs.push(
          tracked(
            url,
            '/v1/chat/completions',
            { model, stream: true, messages: [{ role: 'user', content: `sse ${i}` }], max_tokens: n },
            'sse',
            marks,
            onFirst,
          ),
        );
    }
    await waitFor(() => b3Started >= 1, 20_000, 'a stream from b3 under way');
    const before = await status(url);
    expect(before.backends[2].inFlight).toBeGreaterThanOrEqual(2);
    child.proc.kill('SIGKILL');
    marks.killed = true;
    const outcomes = await Promise.all(runs);

    const broken = outcomes.filter((o) => o.backend === 'b3');
    // The ones that had started on b3 end with an error line (NDJSON) or error event (SSE), never done.
    for (const o of broken) {
      expect(o.startedBeforeKill).toBe(true);
      expect(o.kind).not.toBe('json');
      expect(o.status).toBe(200);
      const last = o.objects[o.objects.length - 1];
      if (o.kind === 'ndjson') {
        expect(typeof last.error).toBe('string');
        expect(o.objects.some((x) => x.done === true)).toBe(false);
      } else {
        expect(typeof last.error?.message).toBe('string');
        expect(o.objects).not.toContain('[DONE]');
      }
      expect(last.error?.message ?? last.error).toMatch(/b3/);
    }
    expect(broken.length).toBeGreaterThanOrEqual(1);
    // Everything else (including what b3 held but had not answered) succeeded elsewhere.
    const rest = outcomes.filter((o) => o.backend !== 'b3');
    for (const o of rest) expectComplete(o);
    expect(rest.length + broken.length).toBe(30);
    expect(rest.filter((o) => o.attempts >= 2).length).toBeGreaterThanOrEqual(1);

    const after = await waitIdle(url);
    expect(after.backends.map((x: any) => x.inFlight)).toEqual([0, 0, 0]);
    // And the balancer keeps serving without b3.
    for (let i = 0; i < 4; i++) {
      const r = await request(`${url}/api/generate`, {
        body: { model, prompt: `after ${i}`, stream: false, options: { num_predict: 3 } },
      });
      expect(r.status).toBe(200);
      expect(r.headers['x-balancer-backend']).not.toBe('b3');
    }
    await waitIdle(url);
  }, 90_000);
});

describe('faults: hang, busy, stall, flap', () => {
  let c: Cluster | undefined;
  afterEach(async () => {
    await c?.close();
    c = undefined;
  });

  it('a backend that hangs: a request it took is not started again elsewhere (504), and the backend is ejected', async () => {
    // Models loaded up front: a cold load (1 s here) would itself outlast this short headers timeout.
    c = await startCluster(
      [
        { tokensPerSecond: 1000, loaded: [model] },
        { tokensPerSecond: 1000, loaded: [model] },
      ],
      {
        ROUTING_POLICY: 'round-robin',
        HEALTH_INTERVAL_MS: '60000', // passive health alone decides here
        HEADERS_TIMEOUT_MS: '400',
        EJECT_CONSECUTIVE_FAILURES: '2',
        EJECT_BASE_MS: '60000',
      },
    );
    await c.sims[1].update({ faults: { hang: true } });
    const results = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        request(`${c!.url}/api/generate`, {
          body: { model, prompt: `h${i}`, stream: false, options: { num_predict: 4 } },
        }),
      ),
    );
    // b2 got its requests in full and may still be generating them: never started a second time
    // (issue 11 item 8); b1's were answered.
    const timedOut = results.filter((r) => r.status === 504);
    expect(timedOut.length).toBe(2);
    for (const r of timedOut) expect(r.body.error).toMatch(/headers timeout after 400 ms \(not retried/);
    for (const r of results.filter((x) => x.status !== 504)) {
      expect(r.status).toBe(200);
      expect(r.body.done).toBe(true);
      expect(r.headers['x-balancer-backend']).toBe('b1');
    }
    expect(results.some((r) => r.headers['x-balancer-attempts'] !== undefined)).toBe(false);
    // b1 served only its own two: none of b2's was started again there.
    expect(c.sims[0].stats().byRoute['POST /api/generate']).toBe(2);
    const st = await waitIdle(c.url);
    expect(st.backends[1].ejected).toBe(true);
    expect(
      st.events.some((e: any) => e.backend === 'b2' && e.event === 'ejected' && /headers timeout/.test(e.detail)),
    ).toBe(true);
    // Streams too, once b2 is out: straight to b1, no waiting.
    const s = await streamTimed(`${c.url}/api/chat`, chat('after', { options: { num_predict: 3 } }));
    expect(s.status).toBe(200);
    expect(parseStream(s.chunks.map((x) => x.text).join('')).pop().done).toBe(true);
  });

  it("a backend answering Ollama's 503 busy: retried elsewhere; when all are busy the client gets 503 with Retry-After", async () => {
    c = await startCluster([{ tokensPerSecond: 1000 }, { tokensPerSecond: 1000 }], {
      ROUTING_POLICY: 'round-robin',
      HEALTH_INTERVAL_MS: '60000',
      EJECT_CONSECUTIVE_FAILURES: '100',
    });
    await c.sims[0].update({ faults: { busy503: true } });
    for (let i = 0; i < 4; i++) {
      const r = await request(`${c.url}/api/chat`, {
        body: chat(`b${i}`, { stream: false, options: { num_predict: 3 } }),
      });
      expect(r.status).toBe(200);
      expect(r.headers['x-balancer-backend']).toBe('b2');
    }
    expect(c.sims[0].stats().errorsByStatus?.['503'] ?? c.sims[0].stats().requests).toBeGreaterThanOrEqual(1);
    await c.sims[1].update({ faults: { busy503: true } });
    const r = await request(`${c.url}/api/chat`, { body: chat('all busy', { stream: false }) });
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBeDefined();
    expect(r.body.error).toMatch(/server busy/);
    const o = await request(`${c.url}/v1/chat/completions`, { body: chat('all busy') });
    expect(o.status).toBe(503);
    expect(o.headers['retry-after']).toBeDefined();
    await waitIdle(c.url);
  });

  it('a 5xx before the first byte is retried; a stream that stalls gets an error line after the idle timeout', async () => {
    // A fake backend whose chat stream sends one line and then nothing: only the idle timeout can end it.
    const stalled = await stallingBackend();
    const sim = await startSimServer({ name: 'ok', port: 0, tokensPerSecond: 1000 });
    const file = writeConfigFile({
      backends: [
        { name: 'stall', url: stalled.url },
        { name: 'ok', url: sim.url },
      ],
    });
    const b = await startBalancer({
      BALANCER_CONFIG: file,
      ROUTING_POLICY: 'round-robin',
      HEALTH_INTERVAL_MS: '60000',
      IDLE_STREAM_TIMEOUT_MS: '500',
      EJECT_CONSECUTIVE_FAILURES: '100',
    });
    try {
      await waitFor(
        async () => (await status(b.url)).backends.every((x: any) => x.inventoryAt !== null),
        10_000,
        'inventory',
      );
      let stalledOnce = false;
      for (let i = 0; i < 4; i++) {
        const started = Date.now();
        const s = await streamTimed(`${b.url}/api/chat`, chat(`s${i}`, { options: { num_predict: 3 } }));
        const objs = parseStream(s.chunks.map((x) => x.text).join(''));
        expect(s.status).toBe(200);
        if (s.headers['x-balancer-backend'] === 'stall') {
          stalledOnce = true;
          expect(objs[0].done).toBe(false);
          expect(objs[objs.length - 1].error).toMatch(/no data for 500 ms/);
          expect(Date.now() - started).toBeGreaterThanOrEqual(450);
        } else expect(objs[objs.length - 1].done).toBe(true);
      }
      expect(stalledOnce).toBe(true);
      // 5xx from the stalling backend's generate: retried on the good one.
      for (let i = 0; i < 2; i++) {
        const r = await request(`${b.url}/api/generate`, { body: { model, prompt: `g${i}`, stream: false } });
        expect(r.status).toBe(200);
        expect(r.headers['x-balancer-backend']).toBe('ok');
      }
      expect(stalled.hits.generate).toBeGreaterThanOrEqual(1);
      await waitIdle(b.url);
    } finally {
      await b.app.close();
      await sim.close();
      await stalled.close();
    }
  });

  it('a backend that flaps: ejected with a growing back-off, back with a slow start, never all ejected', async () => {
    c = await startCluster([{ tokensPerSecond: 1000 }, { tokensPerSecond: 1000 }, { tokensPerSecond: 40 }], {
      ROUTING_POLICY: 'round-robin',
      HEALTH_INTERVAL_MS: '60000',
      EJECT_CONSECUTIVE_FAILURES: '2',
      EJECT_BASE_MS: '300',
      EJECT_MAX_PERCENT: '50',
      SLOW_START_MS: '30000',
      RETRY_BUDGET_RATIO: '1',
    });
    const gen = (p: string) =>
      request(`${c!.url}/api/generate`, { body: { model, prompt: p, stream: false, options: { num_predict: 2 } } });
    await c.sims[2].update({ faults: { error500: true } });
    // Phase 1: b3 fails every request; the clients never notice, b3 is ejected twice, the second time for longer.
    const ejections = () =>
      status(c!.url).then((s) =>
        s.events
          .filter((e: any) => e.backend === 'b3' && e.event === 'ejected')
          .map((e: any) => Number(/for (\d+) ms/.exec(e.detail)![1])),
      );
    let i = 0;
    while ((await ejections()).length < 2) {
      const r = await gen(`f${i++}`);
      expect(r.status).toBe(200);
      expect(r.headers['x-balancer-backend']).not.toBe('b3');
      const st = await status(c.url);
      expect(st.backends.filter((x: any) => x.ejected).length).toBeLessThanOrEqual(1);
      if (i > 200) throw new Error('b3 was not ejected twice');
      await sleep(20);
    }
    const times = (await ejections()).reverse(); // events are newest first
    expect(times[0]).toBe(300);
    expect(times[1]).toBe(600);

    // Phase 2: every backend fails at once: at most one is ever ejected (50 % of 3), the others keep taking traffic.
    await Promise.all(c.sims.map((s) => s.update({ faults: { error500: true } })));
    for (let k = 0; k < 12; k++) {
      const r = await gen(`all${k}`);
      expect([200, 500]).toContain(r.status);
      expect(typeof r.body.error === 'string' || r.body.done === true).toBe(true);
      const st = await status(c.url);
      expect(st.backends.filter((x: any) => x.ejected).length).toBeLessThanOrEqual(1);
      expect(st.backends.some((x: any) => x.available)).toBe(true);
    }
    await Promise.all(c.sims.map((s) => s.update({ faults: { error500: false } })));

    // Phase 3: b3 recovers. Once its ejection ends it takes traffic again, but in slow start only one
    // request at a time (its cap of 4 scaled down), even when round-robin would hand it more.
    await waitFor(
      async () => (await status(c!.url)).backends.every((x: any) => !x.ejected),
      15_000,
      'no backend ejected',
    );
    const streams = Array.from({ length: 9 }, (_, k) =>
      streamTimed(`${c!.url}/api/chat`, chat(`slow start ${k}`, { options: { num_predict: 20 } })),
    );
    await sleep(100);
    const during = await status(c.url);
    expect(during.backends[2].inFlight).toBeLessThanOrEqual(1);
    const done = await Promise.all(streams);
    for (const s of done) {
      expect(s.status).toBe(200);
      expect(parseStream(s.chunks.map((x) => x.text).join('')).pop().done).toBe(true);
    }
    expect(done.filter((s) => s.headers['x-balancer-backend'] === 'b3').length).toBeGreaterThanOrEqual(1);
    await waitIdle(c.url);
  }, 60_000);

  it('a quiet gpu-agent alone never takes a healthy Ollama out of rotation', async () => {
    const deadAgent = 'http://127.0.0.1:9'; // discard port: nothing listens
    c = await startCluster(
      [{ tokensPerSecond: 1000 }, { tokensPerSecond: 1000 }],
      { ROUTING_POLICY: 'round-robin', AGENT_INTERVAL_MS: '100', HEALTH_TIMEOUT_MS: '200' },
      [{ agentUrl: deadAgent }, {}],
    );
    await waitFor(async () => (await status(c!.url)).backends[0].agent?.error != null, 5000, 'agent error seen');
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await request(`${c.url}/api/generate`, { body: { model, prompt: `a${i}`, stream: false } });
      expect(r.status).toBe(200);
      seen.add(String(r.headers['x-balancer-backend']));
    }
    expect(seen).toEqual(new Set(['b1', 'b2']));
    const st = await status(c.url);
    expect(st.backends[0]).toMatchObject({ health: 'healthy', ejected: false, available: true });
  });
});

describe('backpressure: bounded queue', () => {
  let c: Cluster | undefined;
  afterEach(async () => {
    await c?.close();
    c = undefined;
  });

  it('queue full: 503 with Retry-After; a queued client that disconnects frees its place at once', async () => {
    c = await startCluster([{ tokensPerSecond: 20, numParallel: 1 }], { QUEUE_MAX: '2', QUEUE_TIMEOUT_MS: '60000' }, [
      { modelConcurrency: 1 },
    ]);
    const body = chat('long', { options: { num_predict: 60 } });
    const running = openRequest(`${c.url}/api/chat`, body);
    await waitFor(async () => (await status(c!.url)).backends[0].inFlight === 1, 5000, 'one running');
    const q1 = openRequest(`${c.url}/api/chat`, chat('q1', { options: { num_predict: 2 } }));
    const q2 = openRequest(`${c.url}/api/chat`, chat('q2', { options: { num_predict: 2 } }));
    await waitFor(async () => (await status(c!.url)).queue.length === 2, 5000, 'two queued');
    const full = await request(`${c.url}/api/chat`, { body: chat('overflow') });
    expect(full.status).toBe(503);
    expect(Number(full.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(full.body.error).toMatch(/queue is full/);
    const fullOpenAi = await request(`${c.url}/v1/chat/completions`, { body: chat('overflow') });
    expect(fullOpenAi.status).toBe(503);
    expect(fullOpenAi.headers['retry-after']).toBeDefined();
    expect(fullOpenAi.body.error.type).toBe('api_error');

    q1.req.destroy();
    expect(await q1.result).toBe('aborted');
    await waitFor(async () => (await status(c!.url)).queue.length === 1, 2000, 'the queue to drop the gone client');
    // Its place is free: a new request queues instead of being turned away.
    const q3 = openRequest(`${c.url}/api/chat`, chat('q3', { options: { num_predict: 2 } }));
    await waitFor(async () => (await status(c!.url)).queue.length === 2, 5000, 'q3 queued');
    running.req.destroy();
    const [r2, r3] = await Promise.all([q2.result, q3.result]);
    for (const r of [r2, r3]) {
      if (r === 'aborted') throw new Error('queued request failed');
      expect(r.status).toBe(200);
      expect(parseStream(r.text).pop().done).toBe(true);
    }
    // The gone client never reached the backend.
    expect(c.sims[0].stats().byRoute['POST /api/chat']).toBe(3);
    await waitIdle(c.url);
  });

  it('queue wait timeout: 503 with Retry-After after QUEUE_TIMEOUT_MS', async () => {
    c = await startCluster([{ tokensPerSecond: 20, numParallel: 1 }], { QUEUE_MAX: '5', QUEUE_TIMEOUT_MS: '300' }, [
      { modelConcurrency: 1 },
    ]);
    const running = openRequest(`${c.url}/api/chat`, chat('long', { options: { num_predict: 60 } }));
    await waitFor(async () => (await status(c!.url)).backends[0].inFlight === 1, 5000, 'one running');
    const r = await request(`${c.url}/api/chat`, { body: chat('waits') });
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBeDefined();
    expect(r.body.error).toMatch(/timed out after 300 ms in the balancer queue/);
    running.req.destroy();
    await waitIdle(c.url);
  });
});

/** A minimal Ollama look-alike: inventory, a chat stream that stalls after one line, a generate that fails. */
async function stallingBackend(): Promise<{
  url: string;
  hits: { chat: number; generate: number };
  close(): Promise<void>;
}> {
  const hits = { chat: 0, generate: 0 };
  const sockets = new Set<import('net').Socket>();
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const json = (status: number, obj: unknown) => {
        const s = JSON.stringify(obj);
        res.writeHead(status, {
          'Content-Type': 'application/json; charset=utf-8',
          'Content-Length': Buffer.byteLength(s),
        });
        res.end(s);
      };
      if (req.url === '/api/version') return json(200, { version: '0.12.3' });
      if (req.url === '/api/tags')
        return json(200, {
          models: [{ name: 'llama3.2:latest', model: 'llama3.2:latest', size: 2e9, digest: 'x', details: {} }],
        });
      if (req.url === '/api/ps') return json(200, { models: [] });
      if (req.url === '/api/chat') {
        hits.chat++;
        res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
        res.write(
          JSON.stringify({
            model,
            created_at: new Date().toISOString(),
            message: { role: 'assistant', content: 'one' },
            done: false,
          }) + '\n',
        );
        return; // and then nothing
      }
      if (req.url === '/api/generate') {
        hits.generate++;
        return json(500, { error: 'simulated failure' });
      }
      json(404, { error: 'not found' });
    });
  });
  srv.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    hits,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}
