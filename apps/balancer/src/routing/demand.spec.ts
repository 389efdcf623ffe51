import { Demand } from './routing.service';

describe('Demand.rate (requests per second per model)', () => {
  /** `rate` requests per second, evenly spaced, from t=0 for `seconds`: the estimate at the end. */
  const steady = (rate: number, seconds: number, perS = false): number | null => {
    const d = new Demand();
    const n = Math.round(rate * seconds);
    for (let i = 0; i < n; i++) d.note('m', (i * 1000) / rate);
    const end = ((n - 1) * 1000) / rate;
    return perS ? d.perS('m', end) : d.rate('m', end);
  };

  it('reads a steady rate as that rate from its first seconds on, not a share of it', () => {
    for (const seconds of [3, 5, 10, 18, 60])
      for (const rate of [0.5, 2, 10]) {
        if (rate * seconds < 5) continue; // too few requests to be a rate
        const got = steady(rate, seconds)!;
        // n requests from the first to the last (n over n - 1 intervals), over at least 3 s.
        const n = Math.round(rate * seconds);
        const expected = n / Math.max((n - 1) / rate, 3);
        expect(got / expected).toBeGreaterThan(0.9);
        expect(got / expected).toBeLessThan(1.1);
      }
    // arrivals(), what the eviction rules were tuned on, lags while the window fills.
    const d = new Demand();
    for (let i = 0; i < 40; i++) d.note('m', i * 250);
    expect(d.arrivals('m', 9750)! / d.rate('m', 9750)!).toBeLessThan(0.7);
  });

  it('is unknown for a model never asked for, and fades once it is no longer asked for', () => {
    const d = new Demand();
    expect(d.rate('m', 0)).toBeNull();
    for (let i = 0; i < 20; i++) d.note('m', i * 500);
    const now = d.rate('m', 9500)!;
    expect(now).toBeGreaterThan(1.7);
    expect(d.rate('m', 9500 + 30_000)!).toBeLessThan(now / 10);
  });
});

describe("Demand with the other replicas' readings (REDIS_URL)", () => {
  it("adds the others' arrivals, rate and full windows to its own, and gives its own for them", () => {
    const d = new Demand();
    for (let i = 0; i < 40; i++) d.note('m', 1000 + i * 250); // 4/s here for 10 s
    const now = 10_750;
    const own = { arrivals: d.arrivals('m', now)!, rate: d.rate('m', now)!, perS: d.perS('m', now) };
    expect(own.perS).toBeNull(); // this replica's window is not full yet
    // Two other replicas see the same model at 4/s (one with a full window) and one only they see.
    d.setOthers(
      new Map([
        ['m', { arrivals: 2 * own.arrivals, rate: 2 * own.rate, perS: own.arrivals }],
        ['other', { arrivals: 1, rate: 1.5, perS: null }],
      ]),
    );
    expect(d.arrivals('m', now)).toBeCloseTo(3 * own.arrivals, 6);
    expect(d.rate('m', now)).toBeCloseTo(3 * own.rate, 6);
    expect(d.perS('m', now)).toBeNull(); // unknown until this replica's own window is full
    expect(d.perS('m', 11_001)).toBeCloseTo(d.readings(11_001).m.arrivals + own.arrivals, 6);
    // A model only the others have seen: theirs; one nobody has seen: unknown, then 0 past the window.
    expect(d.rate('other', now)).toBe(1.5);
    expect(d.arrivals('none', now)).toBeNull();
    expect(d.perS('none', 11_001)).toBe(0);
    // What it gives the others is its own traffic only (not theirs again), its busiest models first.
    const mine = d.readings(now);
    expect(Object.keys(mine)).toEqual(['m']);
    expect(mine.m).toEqual({ arrivals: own.arrivals, rate: own.rate, perS: null });
    expect(d.readings(11_001).m.perS).toBeCloseTo(d.readings(11_001).m.arrivals, 9);
    for (let i = 0; i < 5; i++) d.note(`x${i}`, 10_000 + i);
    expect(Object.keys(d.readings(now, 3))).toEqual(['m', 'x4', 'x3']);
    // Redis away: its own again.
    d.setOthers(new Map());
    expect(d.rate('m', now)).toBeCloseTo(own.rate, 9);
  });
});
