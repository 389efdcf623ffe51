import { LearnedStats } from './learned-stats';

describe('LearnedStats early token rate (from a stream still running)', () => {
  it('stands for an unknown rate until the first answer, whose counters replace it', () => {
    const l = new LearnedStats();
    expect(l.rateUnknown('m')).toBe(true);
    l.noteEarlyRate('m', 18);
    expect(l.rateUnknown('m')).toBe(false);
    expect(l.tokenRate('m')).toBe(18);
    // The fleet-wide rate (for models it has not answered) is that reading too, until an answer.
    expect(l.tokenRate('other')).toBe(18);
    // The answer's own counters: 40 tokens in 2 s. They replace the reading, not average with it.
    l.noteTokens('m', 40, 2e9, undefined, undefined);
    expect(l.tokenRate('m')).toBe(20);
    expect(l.tokensPerSecAll.value).toBe(20);
    // From then on answers average as before.
    l.noteTokens('m', 30, 1e9, undefined, undefined);
    expect(l.tokenRate('m')).toBeCloseTo(22, 5);
  });

  it('never overrides a rate an answer has shown, and ignores readings that are no rate', () => {
    const l = new LearnedStats();
    l.noteTokens('m', 100, 1e9, undefined, undefined);
    l.noteEarlyRate('m', 5);
    expect(l.tokenRate('m')).toBe(100);
    for (const bad of [0, -3, NaN, Infinity]) l.noteEarlyRate('n', bad);
    expect(l.rateUnknown('n')).toBe(true);
    // A reading for another model leaves the fleet-wide rate an answer set.
    l.noteEarlyRate('n', 10);
    expect(l.tokenRate('n')).toBe(10);
    expect(l.tokensPerSecAll.value).toBe(100);
    l.noteTokens('n', 12, 1e9, undefined, undefined);
    expect(l.tokenRate('n')).toBe(12);
    expect(l.tokensPerSecAll.value).toBeCloseTo(100 + 0.2 * (12 - 100), 5);
  });
});
