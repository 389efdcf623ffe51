import { JsonLog } from './json-log';
import { ModelLabels, routeLabel } from './labels';
import { RecentTraffic } from './recent-traffic';

describe('metric labels', () => {
  it('keeps routes to a fixed set', () => {
    expect(routeLabel('/api/chat')).toBe('/api/chat');
    expect(routeLabel('/v1/chat/completions')).toBe('/v1/chat/completions');
    expect(routeLabel('/v1/models/llama3.2')).toBe('/v1/models/:model');
    expect(routeLabel('/api/blobs/sha256:abc')).toBe('/api/blobs/:digest');
    expect(routeLabel('/api/chat/extra')).toBe('other');
    expect(routeLabel('/wp-login.php')).toBe('other');
  });

  it('caps distinct models, then answers "other"', () => {
    const m = new ModelLabels(2);
    expect([m.label('a:latest'), m.label('b:latest'), m.label('c:latest'), m.label('a:latest'), m.label(null)]).toEqual(
      ['a:latest', 'b:latest', 'other', 'a:latest', 'none'],
    );
  });
});

describe('JsonLog', () => {
  it('writes one plain JSON object per line and honours the level', () => {
    const lines: string[] = [];
    const log = new JsonLog('log', (l) => lines.push(l));
    log.line('debug', 'route', { backend: 'b1' });
    log.line('log', 'request', { id: 'x', status: 200 });
    log.line('warn', 'empty', {});
    expect(lines).toHaveLength(2);
    expect(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n'))).toBe(true);
    expect(JSON.parse(lines[0])).toEqual({
      level: 'info',
      time: expect.any(String),
      event: 'request',
      id: 'x',
      status: 200,
    });
    expect(JSON.parse(lines[1])).toEqual({ level: 'warn', time: expect.any(String), event: 'empty' });
    expect(new JsonLog('error', () => undefined).enabled('warn')).toBe(false);
  });
});

describe('RecentTraffic', () => {
  it('buckets requests by time slot with rate, quantiles, TTFB, tokens and per-backend counts', () => {
    const t = new RecentTraffic(['b1', 'b2'], 1000, 10_000);
    const t0 = 1_000_000_000;
    for (let i = 0; i < 10; i++) t.record(t0 + 100, 40 + i * 10, 5, i === 9, i % 2 ? 'b2' : 'b1', 20);
    t.record(t0 + 1500, 3000, null, false, 'b1', undefined);
    const s = t.series(t0 + 1999);
    expect(s).toHaveLength(10);
    const [a, b] = s.slice(-2);
    expect(a).toMatchObject({
      t: t0,
      requests: 10,
      errors: 1,
      rps: 10,
      meanMs: 85,
      p50Ms: 100,
      p95Ms: 250,
      meanTtfbMs: 5,
      tokensPerS: 200,
      perBackend: [5, 5],
    });
    expect(b).toMatchObject({ requests: 1, p50Ms: 4000, meanTtfbMs: null, perBackend: [1, 0] });
    // Slots older than the window are forgotten, not mixed into new ones.
    t.record(t0 + 10_100, 10, null, false, 'b2', undefined);
    const later = t.series(t0 + 10_500);
    expect(later.reduce((n, p) => n + p.requests, 0)).toBe(2);
    expect(later[later.length - 1]).toMatchObject({ requests: 1, perBackend: [0, 1] });
  });
});

describe('RecentTraffic with a backend that joins later', () => {
  it('keeps the counts it had and counts the newcomer from then on', () => {
    const t = new RecentTraffic(['a', 'b'], 1000, 5000);
    t.record(10_000, 5, null, false, 'a', undefined);
    t.record(11_000, 5, null, false, 'b', undefined);
    t.record(11_000, 5, null, false, 'c', undefined); // not a backend yet: not counted per backend
    t.addBackend('c');
    t.addBackend('c');
    t.record(12_000, 5, null, false, 'c', undefined);
    t.record(12_000, 5, null, false, 'a', undefined);
    const s = t.series(12_500);
    expect(t.backends).toEqual(['a', 'b', 'c']);
    expect(s.slice(-3).map((p) => p.perBackend)).toEqual([
      [1, 0, 0],
      [0, 1, 0],
      [1, 0, 1],
    ]);
  });
});
