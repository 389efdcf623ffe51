import { Counter, Histogram, Registry } from 'prom-client';
import { FastCounter, FastHistogram } from './fast-metrics';

/** The fast series must scrape exactly as prom-client's own metrics fed the same values. */
describe('FastCounter / FastHistogram', () => {
  it('a histogram scrapes the same text as prom-client fed the same observations', async () => {
    const fastReg = new Registry();
    const plainReg = new Registry();
    const config = {
      name: 'x_seconds',
      help: 'h',
      labelNames: ['route', 'backend'] as const,
      buckets: [0.01, 0.1, 0.5, 1],
    };
    const fast = new FastHistogram({ ...config, labelNames: [...config.labelNames], registers: [fastReg] });
    const plain = new Histogram({ ...config, labelNames: [...config.labelNames], registers: [plainReg] });
    const values = [0, 0.005, 0.01, 0.02, 0.3, 0.5, 0.99, 1, 7, 1e9, 0.1];
    for (const [i, v] of values.entries()) {
      const route = i % 2 === 0 ? 'chat' : 'generate';
      fast.labels(route, 'b1').observe(v);
      plain.labels(route, 'b1').observe(v);
    }
    fast.labels('never', 'observed');
    expect(await fastReg.metrics()).toBe(await plainReg.metrics());
    // A second scrape after more observations still matches (the scrape rebuilds, never adds twice).
    fast.labels('chat', 'b2').observe(0.2);
    plain.labels('chat', 'b2').observe(0.2);
    expect(await fastReg.metrics()).toBe(await plainReg.metrics());
    expect(await fastReg.metrics()).toContain('x_seconds_bucket{le="0.5",route="chat",backend="b2"} 1');
  });

  it('a counter scrapes the same text, a series appears once touched (also by inc(0))', async () => {
    const fastReg = new Registry();
    const plainReg = new Registry();
    const fast = new FastCounter({ name: 'y_total', help: 'h', labelNames: ['model'], registers: [fastReg] });
    const plain = new Counter({ name: 'y_total', help: 'h', labelNames: ['model'], registers: [plainReg] });
    for (const [m, v] of [
      ['a', 1],
      ['b', 2.5],
      ['a', 3],
      ['z', 0],
    ] as const) {
      fast.labels(m).inc(v);
      plain.labels(m).inc(v);
    }
    fast.labels('untouched');
    expect(await fastReg.metrics()).toBe(await plainReg.metrics());
    expect(await fastReg.metrics()).toContain('y_total{model="a"} 4');
    expect(() => fast.labels('a', 'extra')).toThrow(/expected 1 label values/);
  });
});
