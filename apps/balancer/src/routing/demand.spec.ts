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
