import { LearnedStats } from './learned-stats';
import { flattenLearned, mergeLearned } from './shared-fleet-sync';

describe('learned statistics shared between replicas', () => {
  it('flattens what a replica learned and moves each number to the mean of every replica', () => {
    const a = new LearnedStats();
    a.noteServiceTime('llama3.2:latest', 1000);
    a.noteTtfb(40);
    expect(flattenLearned(a)).toEqual({ serviceMsAll: 1000, ttfbMs: 40, 'serviceMs:llama3.2:latest': 1000 });

    const b = new LearnedStats();
    b.noteServiceTime('llama3.2:latest', 2000);
    b.noteTokens('qwen3:8b', 50, 1e9, undefined, undefined);
    const c = new LearnedStats();
    c.noteServiceTime('llama3.2:latest', 3000);

    mergeLearned(a, [flattenLearned(b), flattenLearned(c)]);
    expect(a.serviceMsAll.value).toBe(2000);
    expect(a.serviceMs.get('llama3.2:latest')!.value).toBe(2000);
    // Known only elsewhere: adopted as is.
    expect(a.tokensPerSec.get('qwen3:8b')!.value).toBe(50);
    expect(a.tokensPerSecAll.value).toBe(50);
    // Known only here: kept.
    expect(a.ttfbMs.value).toBe(40);
    // Nothing from the others changes nothing.
    mergeLearned(a, []);
    expect(a.serviceMsAll.value).toBe(2000);
  });

  it('shares the prompt speed learned without cache hits (PrefillLearner) like any other number', () => {
    const a = new LearnedStats();
    const b = new LearnedStats();
    b.noteTokens('m:latest', undefined, undefined, 1000, 500e6); // 0.5 ms per prompt token
    b.noteTokens('m:latest', undefined, undefined, 1000, 10e6, true); // a conversation's cache hit: ignored
    expect(flattenLearned(b)).toEqual({ promptMsPerToken: 0.5 });
    a.noteTokens('m:latest', undefined, undefined, 1000, 1000e6);
    mergeLearned(a, [flattenLearned(b)]);
    expect(a.promptMsPerToken.value).toBeCloseTo(0.75);
  });
});
