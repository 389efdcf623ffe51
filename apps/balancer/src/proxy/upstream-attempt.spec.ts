import type { IncomingMessage } from 'http';
import { BackendResponse, ClientResponse, clientRequest, ProxyRequest, tick } from '../../test/doubles/http-doubles';
import { loadBalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { LocalLeaseLedger } from '../routing/lease-ledger';
import { DeadlineSweep } from './deadline-sweep';
import { AttemptContext, AttemptOwner, UpstreamAttempt } from './upstream-attempt';

/** Records what an attempt reports, in order. */
class RecordingOwner implements AttemptOwner {
  readonly events: string[] = [];
  readonly data: string[] = [];
  body: string | null = null;
  onUpstreamHeaders(a: UpstreamAttempt, r: IncomingMessage): void {
    this.events.push(`headers ${r.statusCode}`);
    if ((r.statusCode ?? 0) >= 500) a.collect();
    else a.relay();
  }
  onUpstreamData(_a: UpstreamAttempt, chunk: Buffer): void {
    this.data.push(chunk.toString());
  }
  onUpstreamEnd(): void {
    this.events.push('end');
  }
  onUpstreamBody(_a: UpstreamAttempt, body: Buffer): void {
    this.events.push('body');
    this.body = body.toString();
  }
  onUpstreamFailure(_a: UpstreamAttempt, why: string): void {
    this.events.push(`failure: ${why}`);
  }
  onClientStalled(): void {
    this.events.push('client stalled');
  }
  onUpstreamBroken(_a: UpstreamAttempt, why: string): void {
    this.events.push(`broken: ${why}`);
  }
}

function setup() {
  const config = loadBalancerConfig({
    OLLAMA_BACKENDS: 'http://b1:1',
    HEADERS_TIMEOUT_MS: '1000',
    IDLE_STREAM_TIMEOUT_MS: '500',
    CONNECT_TIMEOUT_MS: '200',
  });
  const registry = new BackendRegistry(config);
  const b = registry.backends[0];
  const ledger = new LocalLeaseLedger(registry);
  const sweep = new DeadlineSweep(config.headersTimeoutMs, config.idleStreamTimeoutMs);
  const sent: UpstreamAttempt[] = [];
  const ctx: AttemptContext = {
    sweep,
    connectTimeoutMs: 200,
    headersTimeoutMs: 1000,
    idleTimeoutMs: 500,
    send: (a) => sent.push(a),
  };
  const owner = new RecordingOwner();
  const lease = ledger.take(
    { backend: b, reason: 'any' },
    { model: 'm:latest', modelSize: 0, sessionKey: null, now: Date.now() },
    0,
  );
  const res = new ClientResponse();
  const attempt = new UpstreamAttempt(
    ctx,
    owner,
    clientRequest(),
    res.asServerResponse(),
    lease,
    Buffer.from('{"model":"m"}'),
    { protocol: 'http:', host: 'b1:1', hostname: 'b1', port: '1' },
  );
  return { b, sweep, sent, owner, attempt };
}

describe('UpstreamAttempt (one try on one backend, without sockets)', () => {
  let sweep: DeadlineSweep | null = null;
  afterEach(() => sweep?.stop());

  it('sends the body once, relays each chunk to its owner, ends cleanly and releases its lease once', async () => {
    const s = setup();
    sweep = s.sweep;
    s.attempt.start();
    expect(s.sent).toEqual([s.attempt]);
    expect(s.b.inFlight).toBe(1);
    const proxyReq = new ProxyRequest();
    s.attempt.onProxyReq(proxyReq.asClientRequest());
    expect(proxyReq.sentBody?.toString()).toBe('{"model":"m"}');
    const up = new BackendResponse(200, { 'content-type': 'application/x-ndjson' }, proxyReq);
    s.attempt.onProxyRes(up.asIncomingMessage());
    up.write('{"a":1}\n');
    up.write('{"done":true}\n');
    up.finish();
    await tick();
    expect(s.owner.events).toEqual(['headers 200', 'end']);
    expect(s.owner.data).toEqual(['{"a":1}\n', '{"done":true}\n']);
    s.attempt.end(null);
    s.attempt.end('again');
    expect(s.b.inFlight).toBe(0);
    expect(proxyReq.destroyed).toBe(false); // a clean end keeps the connection for the next request
  });

  it('hands a 5xx body to its owner in one piece', async () => {
    const s = setup();
    sweep = s.sweep;
    s.attempt.start();
    const proxyReq = new ProxyRequest();
    s.attempt.onProxyReq(proxyReq.asClientRequest());
    const up = new BackendResponse(503, { 'content-type': 'application/json' }, proxyReq);
    s.attempt.onProxyRes(up.asIncomingMessage());
    up.write('{"error":"server ');
    up.finish('busy"}');
    await tick();
    expect(s.owner.events).toEqual(['headers 503', 'body']);
    expect(s.owner.body).toBe('{"error":"server busy"}');
  });

  it('ignores a response that belongs to another upstream request', () => {
    const s = setup();
    sweep = s.sweep;
    s.attempt.start();
    s.attempt.onProxyReq(new ProxyRequest().asClientRequest());
    const stale = new BackendResponse(200, {}, new ProxyRequest());
    s.attempt.onProxyRes(stale.asIncomingMessage());
    expect(stale.destroyed).toBe(true);
    expect(s.owner.events).toEqual([]);
  });

  it('reports the headers deadline as a failure, and idle after the first byte as a broken stream', async () => {
    const s = setup();
    sweep = s.sweep;
    s.attempt.start();
    s.sweep.check(s.attempt.startedAt + 999);
    expect(s.owner.events).toEqual([]);
    s.sweep.check(s.attempt.startedAt + 1000);
    expect(s.owner.events).toEqual(['failure: headers timeout after 1000 ms']);

    const t = setup();
    sweep = t.sweep;
    t.attempt.start();
    const proxyReq = new ProxyRequest();
    t.attempt.onProxyReq(proxyReq.asClientRequest());
    const up = new BackendResponse(200, {}, proxyReq);
    t.attempt.onProxyRes(up.asIncomingMessage());
    up.write('{"a":1}\n');
    await tick();
    const since = t.attempt.idleSince;
    t.sweep.check(since + 400); // a chunk since the last look: the idle clock restarts
    t.sweep.check(since + 899);
    expect(t.owner.events).toEqual(['headers 200']);
    t.sweep.check(since + 900);
    expect(t.owner.events).toEqual(['headers 200', 'broken: no data for 500 ms']);
  });

  it('an error before the response is a failure; after it, a broken stream; end(why) aborts both sides', async () => {
    const s = setup();
    sweep = s.sweep;
    s.attempt.start();
    const proxyReq = new ProxyRequest();
    s.attempt.onProxyReq(proxyReq.asClientRequest());
    s.attempt.onProxyError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), { other: true });
    expect(s.owner.events).toEqual([]); // an earlier try's target: not this attempt's error
    s.attempt.onProxyError(
      Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      s.attempt.target,
    );
    expect(s.owner.events).toEqual(['failure: ECONNREFUSED: connect ECONNREFUSED']);

    const t = setup();
    sweep = t.sweep;
    t.attempt.start();
    const req2 = new ProxyRequest();
    t.attempt.onProxyReq(req2.asClientRequest());
    const up = new BackendResponse(200, {}, req2);
    t.attempt.onProxyRes(up.asIncomingMessage());
    t.attempt.onProxyError(new Error('socket hang up'), undefined);
    expect(t.owner.events).toEqual(['headers 200', 'broken: socket hang up']);
    t.attempt.end('socket hang up');
    expect(up.destroyed).toBe(true);
    expect(req2.destroyed).toBe(true);
    expect(t.b.inFlight).toBe(0);
    await tick();
  });
});
