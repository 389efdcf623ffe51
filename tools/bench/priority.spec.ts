import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';
import { fleetCapacity, ModeResult, parsePriorityScenario, planArrivals, priorityChecks } from './priority';
import { summarize } from './stats';
import { lineChart } from './svg';

const dir = join(__dirname, 'scenarios/priority');
const load = (f: string) => parsePriorityScenario(JSON.parse(readFileSync(join(dir, f), 'utf8')), f);

describe('priority bench suite', () => {
  it('parses every shipped scenario and names a bad field', () => {
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.json'))) expect(load(f).keys.length).toBeGreaterThan(0);
    expect(() =>
      parsePriorityScenario(
        { name: 'x', backends: [{ name: 'a', tokensPerSecond: 0, numParallel: 1 }], keys: [{}] },
        'bad.json',
      ),
    ).toThrow('priority scenario bad.json: backends[0].tokensPerSecond must be a number >= 1 (got 0)');
  });

  it('plans the same seeded arrivals every time, each key at its offered share of the capacity', () => {
    const sc = load('1-classes.json');
    const a = planArrivals(sc, sc.keys, 200);
    expect(planArrivals(sc, sc.keys, 200)).toEqual(a);
    const cap = fleetCapacity(sc);
    expect(cap.tokensPerS).toBe(400);
    for (const k of sc.keys) {
      const n = a.filter((p) => p.key === k.name).length;
      const want = k.offered * cap.requestsPerS(k) * 200;
      expect(Math.abs(n / want - 1)).toBeLessThan(0.1);
    }
  });

  it('judges interactive latency against idle, the batch share of what is left, and weighted shares', () => {
    const sc = load('1-classes.json');
    const key = (name: string, cls: string, tokensPerS: number, p95: number, weight = 1) => ({
      key: name,
      class: cls,
      weight,
      sent: 1,
      ok: 1,
      refused: 0,
      errors: 0,
      unfinished: 0,
      tokensPerS,
      e2eMs: { ...summarize([p95]), p95 },
      queueMs: summarize([0]),
    });
    const modes: ModeResult[] = [
      { mode: 'idle', keys: [key('chat', 'interactive', 80, 1000)], totalTokensPerS: 80, waitSeries: [] },
      {
        mode: 'fifo',
        keys: [key('chat', 'interactive', 20, 20000), key('nightly', 'batch', 360, 20000)],
        totalTokensPerS: 380,
        waitSeries: [],
      },
      {
        mode: 'priority',
        keys: [key('chat', 'interactive', 80, 1400), key('nightly', 'batch', 280, 20000)],
        totalTokensPerS: 360,
        waitSeries: [],
      },
    ];
    const checks = priorityChecks(sc, modes);
    expect(checks.map((c) => [c.name, c.pass])).toEqual([
      ['chat (interactive) p95 e2e <= 1.5x its idle p95', true],
      ['batch share of the capacity left over >= 0.9', true],
    ]);
    expect(checks[1].measured).toBeCloseTo(280 / 300);
    const w = load('2-weights.json');
    const weighted = priorityChecks(w, [
      {
        mode: 'priority',
        keys: [key('team-a', 'standard', 230, 1, 2), key('team-b', 'standard', 130, 1, 1)],
        totalTokensPerS: 360,
        waitSeries: [],
      },
    ]);
    expect(weighted).toEqual([
      { name: 'served ratio team-a:team-b within 10 % of 2.0:1', measured: 230 / 130, limit: 2, pass: false },
    ]);
  });

  it('draws a line chart with one path per series', () => {
    const svg = lineChart({
      title: 't',
      xLabel: 's',
      unit: 'ms',
      log: true,
      series: [
        {
          label: 'a',
          colour: '#000',
          points: [
            [1, 10],
            [2, 1000],
          ],
        },
        { label: 'b (fifo)', colour: '#111', dashed: true, points: [[1, 5]] },
      ],
    });
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(svg).toContain('stroke-dasharray');
  });
});
