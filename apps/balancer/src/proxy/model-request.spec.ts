import { BackendResponse, ClientResponse, clientRequest, ProxyRequest, tick } from '../../test/doubles/http-doubles';
import { loadBalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { FleetEvents } from '../fleet/fleet-events';
import { ModelInventory } from '../fleet/model-inventory';
import { OllamaClient } from '../fleet/ollama-client';
import { OutlierDetection } from '../fleet/outlier-detection';
import { OutputLengths } from '../fleet/output-lengths';
import { Lifecycle } from '../lifecycle/lifecycle';
import { LocalLeaseLedger } from '../routing/lease-ledger';
import { FairPlacementQueue } from '../routing/fair-placement-queue';
import { ResumeBudget } from '../routing/resume-budget';
import { LocalRetryBudget } from '../routing/retry-budget';
import { RoutingService } from '../routing/routing.service';
import { LocalSessionAffinity } from '../routing/session-affinity';
import { DeadlineSweep } from './deadline-sweep';
import { missingModelNamed, ModelRequest, ModelRequestInit, ModelRequestServices } from './model-request';
import { RequestRecords } from './request-records';
import { UpstreamAttempt } from './upstream-attempt';

const MODEL = 'm:latest';

/** The real routing stack over backends known healthy and holding the model; attempts go nowhere until the spec answers them. */
function setup(env: Record<string, string> = {}) {
  const config = loadBalancerConfig({
    OLLAMA_BACKENDS: 'http://b1:1,http://b2:1',
    HEADERS_TIMEOUT_MS: '1000',
    IDLE_STREAM_TIMEOUT_MS: '500',
    ...env,
  });
  const registry = new BackendRegistry(config);
  for (const b of registry.backends) {
    b.health = 'healthy';
    b.inventoryAt = Date.now();
    b.modelsOnDisk.set(MODEL, { name: MODEL, size: 1e9, raw: { name: MODEL } });
  }
  const queue = new FairPlacementQueue(config);
  const inventory = new ModelInventory(config, registry, new OllamaClient(config));
  const routing = new RoutingService(
    config,
    registry,
    new LocalLeaseLedger(registry),
    queue,
    new LocalSessionAffinity(),
    new Lifecycle(),
    inventory,
  );
  const retryBudget = new LocalRetryBudget(config, registry);
  const outliers = new OutlierDetection(config, registry, new FleetEvents());
  const records = new RequestRecords();
  const sweep = new DeadlineSweep(config.headersTimeoutMs, config.idleStreamTimeoutMs);
  const sent: UpstreamAttempt[] = [];
  const svc: ModelRequestServices = {
    routing,
    retryBudget,
    outliers,
    inventory,
    outputLengths: new OutputLengths(),
    records,
    upstream: {
      sweep,
      connectTimeoutMs: config.connectTimeoutMs,
      headersTimeoutMs: config.headersTimeoutMs,
      idleTimeoutMs: config.idleStreamTimeoutMs,
      send: (a) => sent.push(a),
      targetOf: (b) => ({ protocol: 'http:', host: b.host, hostname: b.url.hostname, port: b.url.port }),
    },
    retryMaxAttempts: config.retryMaxAttempts,
    resumeBudget: new ResumeBudget(config, registry),
    resumeMax: config.streamResumeMax,
    log: { warn: () => undefined },
    open: new Set(),
  };
  const request = (
    body = '{"model":"m","messages":[{"role":"user","content":"hi"}]}',
    init: Partial<ModelRequestInit> = {},
  ) => {
    const res = new ClientResponse();
    const record = records.begin(clientRequest(), '/api/chat', 'req-1', Date.now());
    const mr = new ModelRequest(svc, clientRequest(), res.asServerResponse(), {
      kind: 'model',
      model: MODEL,
      displayModel: 'm',
      queue: { cls: 0, key: '', weight: 1 },
      body: Buffer.from(body),
      sessionKey: null,
      outputBound: null,
      continuesConversation: false,
      keepAliveMs: undefined,
      capabilities: [],
      path: '/api/chat',
      streamed: true,
      requestId: 'req-1',
      startedAt: Date.now(),
      record,
      ...init,
    });
    return { mr, res, record };
  };
  return { registry, queue, retryBudget, sweep, sent, svc, request };
}

/** Answers an attempt's request with headers; the body follows as the spec writes it. */
function answer(attempt: UpstreamAttempt, status: number, headers: Record<string, string>): BackendResponse {
  const proxyReq = new ProxyRequest();
  attempt.onProxyReq(proxyReq.asClientRequest());
  const up = new BackendResponse(status, headers, proxyReq);
  attempt.onProxyRes(up.asIncomingMessage());
  return up;
}

describe('ModelRequest (one client request through dispatch, retries, failure and finish, without sockets)', () => {
  let sweep: DeadlineSweep | null = null;
  afterEach(() => sweep?.stop());

  it('headers -> 503 -> retry on the other backend -> success: one writeHead, the stream untouched', async () => {
    const s = setup();
    sweep = s.sweep;
    const { mr, res, record } = s.request();
    mr.start();
    expect(s.sent).toHaveLength(1);
    const first = s.sent[0];
    const busy = answer(first, 503, { 'content-type': 'application/json' });
    busy.finish('{"error":"server busy"}');
    await tick();
    // Nothing reached the client; the request went to the backend it had not tried.
    expect(res.headersSent).toBe(false);
    expect(s.sent).toHaveLength(2);
    const second = s.sent[1];
    expect(second.backend).not.toBe(first.backend);
    expect(first.backend.inFlight).toBe(0);
    // Its 503 counts against it once the request is answered well elsewhere (issue 11 item 11).
    expect(first.backend.consecutiveErrors).toBe(0);
    expect(s.retryBudget.retrying).toBe(1);

    const ok = answer(second, 200, { 'content-type': 'application/x-ndjson' });
    ok.write('{"message":{"content":"he"},"done":false}\n');
    // Accepted by a backend: an ordinary request again, out of the retry budget.
    expect(s.retryBudget.retrying).toBe(0);
    ok.write('{"message":{"content":"llo"},"done":false}\n');
    ok.finish('{"done":true,"eval_count":12,"eval_duration":400000000}\n');
    await tick();
    expect(res.head?.status).toBe(200);
    expect(res.head?.headers).toMatchObject({
      'content-type': 'application/x-ndjson',
      'X-Balancer-Backend': second.backend.name,
      'X-Balancer-Attempts': '2',
      'X-Request-Id': 'req-1',
    });
    expect(res.body).toBe(
      '{"message":{"content":"he"},"done":false}\n{"message":{"content":"llo"},"done":false}\n{"done":true,"eval_count":12,"eval_duration":400000000}\n',
    );
    expect(res.writableEnded).toBe(true);
    expect(mr.finished).toBe(true);
    expect(record).toMatchObject({
      status: 200,
      attempts: 2,
      retries: 1,
      backend: second.backend.name,
      evalCount: 12,
      error: null,
    });
    expect(s.registry.totalInFlight()).toBe(0);
    expect(s.retryBudget.retrying).toBe(0);
    expect(second.backend.learned.tokenRate(MODEL)).toBe(30);
    expect(first.backend.consecutiveErrors).toBe(1);
  });

  it('client gone while queued: leaves the queue, is never sent, holds no slot', async () => {
    const s = setup({ OLLAMA_BACKENDS: 'http://b1:1', BACKEND_PARALLEL: '1' });
    sweep = s.sweep;
    const a = s.request();
    a.mr.start();
    const b = s.request();
    b.mr.start();
    expect(s.sent).toHaveLength(1);
    expect(s.queue.length).toBe(1);
    b.mr.clientClosed();
    expect(s.queue.length).toBe(0);
    expect(b.mr.finished).toBe(true);
    expect(b.record).toMatchObject({ status: 499, error: 'client closed the connection' });
    // The first answer frees the slot: nobody waits for it any more.
    answer(s.sent[0], 200, { 'content-type': 'application/json' }).finish('{"done":true}');
    await tick();
    expect(a.res.head?.status).toBe(200);
    expect(s.sent).toHaveLength(1);
    expect(b.res.headersSent).toBe(false);
    expect(s.registry.totalInFlight()).toBe(0);
  });

  it('idle timeout after the first byte: the stream ends with an error line, the backend counts a failure, no retry', async () => {
    const s = setup();
    sweep = s.sweep;
    const { mr, res, record } = s.request();
    mr.start();
    const attempt = s.sent[0];
    const up = answer(attempt, 200, { 'content-type': 'application/x-ndjson' });
    up.write('{"message":{"content":"he"},"done":false}\n');
    await tick();
    expect(res.head?.status).toBe(200);
    const since = attempt.idleSince;
    s.sweep.check(since + 100); // the chunk: the idle clock restarts now
    s.sweep.check(since + 100 + 500);
    expect(res.body).toBe(
      `{"message":{"content":"he"},"done":false}\n{"error":"backend ${attempt.backend.name}: no data for 500 ms"}\n`,
    );
    expect(res.writableEnded).toBe(true);
    expect(mr.finished).toBe(true);
    expect(s.sent).toHaveLength(1);
    expect(up.destroyed).toBe(true);
    expect(attempt.backend.consecutiveErrors).toBe(1);
    expect(record).toMatchObject({ status: 200, error: `backend ${attempt.backend.name}: no data for 500 ms` });
    expect(s.registry.totalInFlight()).toBe(0);
  });
});

describe('ModelRequest learning from answers (output length per model, prefill speed per backend)', () => {
  let sweep: DeadlineSweep | null = null;
  afterEach(() => sweep?.stop());

  /** One request through a one-backend fleet, answered with this final line. */
  async function served(s: ReturnType<typeof setup>, init: Partial<ModelRequestInit>, final: string) {
    const { mr, res } = s.request(undefined, init);
    mr.start();
    const attempt = s.sent[s.sent.length - 1];
    answer(attempt, 200, { 'content-type': 'application/x-ndjson' }).finish(final + '\n');
    await tick();
    expect(res.head?.status).toBe(200);
    expect(mr.finished).toBe(true);
    return mr;
  }

  it('a num_predict of 1000 whose answers use 100 tokens is expected to come to 100, not 1000', async () => {
    const s = setup({ OLLAMA_BACKENDS: 'http://b1:1' });
    sweep = s.sweep;
    const answered = '{"done":true,"eval_count":100,"eval_duration":1000000000}';
    // Nothing known yet: the bound is all there is.
    const first = await served(s, { outputBound: 1000 }, answered);
    expect(first.route.expectedTokens).toBe(1000);
    for (let i = 0; i < 3; i++) await served(s, { outputBound: 1000 }, answered);
    const next = s.request(undefined, { outputBound: 1000 });
    next.mr.start();
    expect(next.mr.route.expectedTokens).toBe(100);
    answer(s.sent[s.sent.length - 1], 200, { 'content-type': 'application/x-ndjson' }).finish(answered + '\n');
    await tick();
    // Without a bound: the model's usual length; a smaller bound than that caps it.
    expect(s.request(undefined, { outputBound: null }).mr['expectedTokens']).toBe(100);
    expect(s.request(undefined, { outputBound: 20 }).mr['expectedTokens']).toBe(2);
    expect(s.svc.outputLengths.usual()).toEqual({ [MODEL]: 100 });
  });

  it('a model no backend answered gets no output-length learner (client names are not remembered)', async () => {
    const s = setup({ OLLAMA_BACKENDS: 'http://b1:1' });
    sweep = s.sweep;
    const { mr, res } = s.request(undefined, { model: 'ghost:latest', displayModel: 'ghost', outputBound: 50 });
    mr.start();
    await tick();
    expect(res.head?.status).toBe(404);
    expect(s.sent).toHaveLength(0);
    // A backend's error answer teaches nothing either.
    const failed = s.request(undefined, { outputBound: 50 });
    failed.mr.start();
    answer(s.sent[0], 400, { 'content-type': 'application/json' }).finish('{"error":"bad request","eval_count":3}');
    await tick();
    expect(failed.res.head?.status).toBe(400);
    expect(s.svc.outputLengths.size).toBe(0);
    expect(s.svc.outputLengths.expected('ghost:latest', null)).toBeNull();
  });

  it("learns load speed from the load's starter only, not from a request sent cold while it is still there", async () => {
    const s = setup({ OLLAMA_BACKENDS: 'http://b1:1' });
    sweep = s.sweep;
    const b = s.registry.backends[0]; // the model on disk (1 GB), not loaded
    const a = s.request();
    a.mr.start();
    const first = s.sent[0];
    expect(first.lease.loadStarter).toBe(true);
    // Ollama held that load back and /api/ps showed it (ModelInventory drops the loading mark); the
    // request stayed there. The server may start the load for it at any moment.
    b.loading.delete(MODEL);
    const bReq = s.request();
    bReq.mr.start();
    const second = s.sent[1];
    expect(second.lease.startedLoad).toBe(true); // sent cold: it watches for a held load too
    expect(second.lease.loadStarter).toBe(false);
    // It arrived in the middle of the load: 0.5 s of it, against the starter's 2 s.
    answer(second, 200, { 'content-type': 'application/x-ndjson' }).finish(
      '{"done":true,"load_duration":500000000,"eval_count":5,"eval_duration":100000000}\n',
    );
    answer(first, 200, { 'content-type': 'application/x-ndjson' }).finish(
      '{"done":true,"load_duration":2000000000,"eval_count":5,"eval_duration":100000000}\n',
    );
    await tick();
    expect(a.res.head?.status).toBe(200);
    expect(bReq.res.head?.status).toBe(200);
    expect(b.learned.loadMsPerByte.value! * 1e9).toBeCloseTo(2000);
  });

  it("a conversation's prompt-cache hit does not pass for a fast prefill; a fresh prompt teaches", async () => {
    const s = setup({ OLLAMA_BACKENDS: 'http://b1:1' });
    sweep = s.sweep;
    const b = s.registry.backends[0];
    // A fresh prompt: 1000 tokens in 500 ms (0.5 ms per token).
    await served(s, {}, '{"done":true,"prompt_eval_count":1000,"prompt_eval_duration":500000000}');
    expect(b.learned.promptMsPerToken.value).toBeCloseTo(0.5);
    // The next turn of a conversation: Ollama counts the 980 cached tokens, evaluates 20 (0.02 ms per token).
    for (let i = 0; i < 3; i++)
      await served(
        s,
        { continuesConversation: true },
        '{"done":true,"prompt_eval_count":1000,"prompt_eval_duration":20000000}',
      );
    expect(b.learned.promptMsPerToken.value).toBeCloseTo(0.5);
    // A slower fresh prompt moves it.
    await served(s, {}, '{"done":true,"prompt_eval_count":1000,"prompt_eval_duration":1000000000}');
    expect(b.learned.promptMsPerToken.value).toBeCloseTo(0.6);
  });
});

describe('missingModelNamed (the model a backend says it lacks)', () => {
  it.each([
    ['{"error":"model \'llama3.2\' not found"}', 'llama3.2'],
    ['{"error":"model \\"qwen2.5:7b\\" not found, try pulling it first"}', 'qwen2.5:7b'],
    ['{"error":{"message":"model \'a\\udc00b\' not found","type":"not_found_error"}}', 'a\udc00b'],
    ['{"type":"error","error":{"type":"not_found_error","message":"model \'x\' not found"}}', 'x'],
    ['{"error":"not found"}', null],
    ['404 page not found', null],
    ['{"error":"blob not found"}', null],
  ])('%s -> %p', (body, want) => expect(missingModelNamed(Buffer.from(body))).toBe(want));
});
