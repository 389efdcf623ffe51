import { quotaMessage, SlidingWindow, UsageLedger } from './usage-ledger';

const T0 = 1_800_000_000_000; // a whole minute and day boundary does not matter; any ms works

describe('SlidingWindow', () => {
  it('sums the last n buckets and forgets older ones', () => {
    const w = new SlidingWindow(1000, 60);
    w.add(T0, 5);
    w.add(T0 + 30_000, 7);
    expect(w.sum(T0 + 59_999)).toBe(12);
    expect(w.sum(T0 + 60_000)).toBe(7);
    expect(w.sum(T0 + 90_000)).toBe(0);
    w.add(T0 + 10 * 86_400_000, 3);
    expect(w.sum(T0 + 10 * 86_400_000)).toBe(3);
  });

  it('says when enough has expired to be under a limit', () => {
    const w = new SlidingWindow(1000, 60);
    w.add(T0, 600);
    w.add(T0 + 20_000, 300);
    w.add(T0 + 40_000, 300);
    // 1,200 used, limit 1,000: the first 600 leave at T0 + 60 s (bucket of T0 plus 60 buckets).
    expect(w.freesBelowAt(T0 + 45_000, 1000)).toBe(Math.floor(T0 / 1000) * 1000 + 60_000);
    // limit 500: the second bucket must go too.
    expect(w.freesBelowAt(T0 + 45_000, 500)).toBe(Math.floor((T0 + 20_000) / 1000) * 1000 + 60_000);
  });
});

describe('UsageLedger', () => {
  const keys = [
    { name: 'chat', tokensPerMinute: 1000, tokensPerDay: 0 },
    { name: 'jobs', tokensPerMinute: 0, tokensPerDay: 5000 },
    { name: 'free', tokensPerMinute: 0, tokensPerDay: 0 },
  ];

  it('counts prompt and output tokens per key, and requests that carried no counts', () => {
    const l = new UsageLedger(keys);
    l.record('chat', 100, 20, T0);
    l.record('chat', 50, 5, T0 + 1000);
    l.record('chat', undefined, undefined, T0 + 2000);
    l.record('stranger', 10, 10, T0);
    expect(l.view(T0 + 2000, 'chat')).toEqual([
      {
        key: 'chat',
        requests: 3,
        unmeteredRequests: 1,
        promptTokens: 150,
        outputTokens: 25,
        lastMinute: { tokens: 175, limit: 1000 },
        lastDay: { tokens: 175, limit: null },
      },
    ]);
    expect(l.view(T0).map((u) => u.key)).toEqual(['chat', 'jobs', 'free']);
    expect(l.has('stranger')).toBe(false);
  });

  it('refuses the next request once a window is used up, and lets it through when the window frees', () => {
    const l = new UsageLedger(keys);
    expect(l.check('chat', T0)).toBeNull();
    l.record('chat', 900, 50, T0); // 950: still under
    expect(l.check('chat', T0 + 100)).toBeNull();
    l.record('chat', 30, 40, T0 + 10_000); // 1,020: over (this answer was not cut)
    const r = l.check('chat', T0 + 15_000)!;
    expect(r).toMatchObject({ key: 'chat', limit: 'tokensPerMinute', allowed: 1000, used: 1020 });
    // The 950 leave the window 60 s after T0's bucket: about 45 s from now.
    expect(r.retryAfterS).toBe(Math.ceil((Math.floor(T0 / 1000) * 1000 + 60_000 - (T0 + 15_000)) / 1000));
    expect(quotaMessage(r)).toBe(
      `token quota exceeded for key 'chat': 1020 of 1000 tokens per minute used (tokensPerMinute); retry in ${r.retryAfterS} s`,
    );
    expect(l.check('chat', T0 + 15_000 + r.retryAfterS * 1000)).toBeNull();
    expect(l.check('free', T0)).toBeNull();
    expect(l.check(null, T0)).toBeNull();
  });

  it('judges the day quota on the last 24 hours', () => {
    const l = new UsageLedger(keys);
    l.record('jobs', 3000, 2000, T0);
    const r = l.check('jobs', T0 + 3_600_000)!;
    expect(r.limit).toBe('tokensPerDay');
    expect(r.retryAfterS).toBeGreaterThan(22 * 3600);
    expect(r.retryAfterS).toBeLessThanOrEqual(23 * 3600);
    expect(l.check('jobs', T0 + 86_400_000)).toBeNull();
  });
});
