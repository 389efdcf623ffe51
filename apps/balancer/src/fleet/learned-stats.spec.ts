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

describe('LearnedStats service time (what Ollama spent loading or queueing is not service)', () => {
  it('learns a cold start as its answer, not as the load before it', () => {
    const l = new LearnedStats();
    // A cold start: 3.5 s loading, 0.2 s of prompt, 40 tokens in 0.8 s; 4.55 s from send to end,
    // its first token 3.75 s after it was sent.
    l.noteAnswer(
      'm',
      4550,
      {
        loadDurationNs: 3500e6,
        promptEvalDurationNs: 200e6,
        evalCount: 40,
        evalDurationNs: 800e6,
        totalDurationNs: 4500e6,
      },
      0,
      3750,
      false,
    );
    expect(l.serviceMs.get('m')!.value).toBeCloseTo(1050, 0);
    expect(l.ttftMs.value).toBeCloseTo(250, 0);
    // One that queued 1 s inside Ollama for a slot: that wait is not its service either.
    const q = new LearnedStats();
    q.noteAnswer(
      'm',
      2050,
      { loadDurationNs: 1e6, promptEvalDurationNs: 200e6, evalDurationNs: 800e6, totalDurationNs: 2001e6 },
      0,
      1250,
      false,
    );
    expect(q.serviceMs.get('m')!.value).toBeCloseTo(1050, -1);
    expect(q.ttftMs.value).toBeCloseTo(250, -1);
  });
});
