import { deletedBy, judgeOutcome } from './run';
import { WireOutcome, WireRequest } from './wire';

const req = (method: string, target: string, headers: [string, string][] = [], body = ''): WireRequest => ({
  method,
  target,
  headers: [['Host', 'balancer.test'], ...headers],
  body: Buffer.from(body),
  lengthDelta: body === '' ? undefined : 0,
});
const ok = { status: 200, headers: { 'content-type': ['text/plain'] }, body: Buffer.from('ok') };
const closed = (n: number): WireOutcome => ({ responses: Array(n).fill(ok), end: 'closed', ms: 5 });

describe('fuzz judge: a connection that closes before every pipelined request is answered', () => {
  const post = req('POST', '/api/chat', [['Content-Type', 'application/json']], '{"model":"llama3.2"}');

  it('is a violation when nothing explains it', () => {
    const v = judgeOutcome([req('GET', '/metrics'), post], closed(0), false, false);
    expect(v.map((x) => x.kind)).toEqual(['closed']);
    expect(judgeOutcome([req('GET', '/metrics'), post, req('GET', '/api/tags')], closed(1), false, false)).toHaveLength(
      1,
    );
  });

  // Seed 4244, case 34 (and the unanalysed one of seeds 700000-700007): GET /metrics with
  // Connection: close, then a 167 KB POST. Node answers 400 for the data after the close and
  // destroys the socket while the POST still arrives; the reset can discard that 400 too.
  it.each([
    ['close', 0],
    ['Close', 0],
    ['keep-alive, close', 1],
  ])('is Node refusing what follows Connection: %s (RFC 9112 §9.6), not a violation', (value, answers) => {
    const first = req('GET', '/metrics', [['Connection', value]]);
    expect(judgeOutcome([first, post, req('POST', '/api/push')], closed(answers), false, false)).toEqual([]);
  });

  // Seed 1100018, index 1929: GET /metrics with Expect: 100-continue (no 100 for a GET, so Node
  // answers it with Connection: close), then an 877 KB POST still being sent: the reset of that
  // close discarded the /metrics answer. Likewise behind an Upgrade, or a queued request expecting 100.
  it.each([
    ['GET with Expect: 100-continue', req('GET', '/metrics', [['Expect', '100-continue']])],
    ['an Upgrade', req('GET', '/metrics', [['Upgrade', 'foo']])],
  ])('is an announced close hidden by a reset after %s, not a violation', (_what, first) => {
    expect(judgeOutcome([first, post, req('POST', '/api/embeddings')], closed(0), false, false)).toEqual([]);
  });

  it('a request expecting 100 closes only where the balancer sends no 100 (GET, HEAD, or queued)', () => {
    const expecting = req('POST', '/api/chat', [['Expect', '100-continue']], '{}');
    expect(judgeOutcome([expecting, post], closed(0), false, false)).toHaveLength(1);
    expect(judgeOutcome([req('GET', '/'), expecting, post], closed(1), false, false)).toEqual([]);
  });

  // Seed 2200013, index 688: a blob upload declaring 5 bytes more than it sent, then a 761 KB POST.
  // The declared length took "POST " from the next request; Node answered its rest with 400 and
  // destroyed the socket while the POST still arrived, so the reset could discard the 400 too.
  it('is the next request misframed by a Content-Length longer than the body, not a violation', () => {
    const long = { ...req('POST', '/api/blobs/sha256:00', [], 'abcd'), lengthDelta: 5 };
    expect(judgeOutcome([long, post], closed(0), false, false)).toEqual([]);
    // Last on its connection, the missing bytes never come: the body timeout's 408 must be there.
    expect(judgeOutcome([post, long], closed(1), false, false)).toHaveLength(1);
  });

  // Seed 4200008, index 874: GET /metrics, a bad POST, then a 710 KB POST with no key and an
  // empty Upgrade header: refused (401) before its body was read, answered with Connection: close;
  // the close became a reset while that body still arrived, and took all three answers with it.
  it('is an announced close on the last request, hidden by a reset, not a violation', () => {
    const last = req('POST', '/api/generate', [['Upgrade', '']], '{"model":"llama3.2"}');
    expect(judgeOutcome([req('GET', '/metrics'), post, last], closed(0), false, false)).toEqual([]);
    const closing = req('POST', '/api/generate', [['Connection', 'close']], '{"model":"llama3.2"}');
    expect(judgeOutcome([req('GET', '/metrics'), closing], closed(0), false, false)).toEqual([]);
  });

  it('still judges other Connection tokens as any other', () => {
    expect(
      judgeOutcome([req('GET', '/metrics', [['Connection', 'closed, x-close']]), post], closed(0), false, false),
    ).toHaveLength(1);
  });
});

describe('fuzz judge: models a case itself deleted', () => {
  it('are read from DELETE /api/delete bodies (model or name, any case), normalised', () => {
    const del = (body: string) => req('DELETE', '/api/delete', [], body);
    const c = {
      plans: [
        { requests: [del('{"model":"llama3.2"}'), req('POST', '/api/pull', [], '{"model":"nomic-embed-text"}')] },
        { requests: [del('{"NAME":"Qwen2.5:0.5B","x":1}'), del('not json'), del('{"model":{"toString":1}}')] },
      ],
    };
    expect([...deletedBy(c)].sort()).toEqual(['llama3.2:latest', 'qwen2.5:0.5b']);
  });
});
