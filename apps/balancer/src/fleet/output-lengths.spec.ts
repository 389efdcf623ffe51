import { MAX_OUTPUT_LENGTH_MODELS, OutputLengths } from './output-lengths';

describe('OutputLengths (each model its usual output length, fleet-wide)', () => {
  it('expects the bound until a model has answered, then the share of it its answers use', () => {
    const o = new OutputLengths();
    expect(o.expected('alpha:latest', 2000)).toBe(2000);
    expect(o.expected('alpha:latest', null)).toBeNull();
    for (let i = 0; i < 3; i++) o.observe('alpha:latest', 20, 2000);
    expect(o.expected('alpha:latest', 2000)).toBe(20);
    expect(o.expected('alpha:latest', null)).toBe(20);
    // Another model is not this one's business.
    expect(o.expected('beta:latest', 2000)).toBe(2000);
    expect(o.usual()).toEqual({ 'alpha:latest': 20 });
  });

  it('an answer without a token count teaches nothing and creates no learner', () => {
    const o = new OutputLengths();
    o.observe('alpha:latest', undefined, 100);
    o.observe('alpha:latest', NaN, 100);
    o.observe('alpha:latest', -1, 100);
    expect(o.size).toBe(0);
    expect(o.usual()).toEqual({});
  });

  it(`keeps at most ${MAX_OUTPUT_LENGTH_MODELS} models, forgetting the one answered least recently`, () => {
    const o = new OutputLengths();
    for (let i = 0; i < MAX_OUTPUT_LENGTH_MODELS; i++) o.observe(`m${i}:latest`, 10, null);
    o.observe('m0:latest', 10, null); // answered again: now the most recent
    o.observe('new:latest', 30, null);
    expect(o.size).toBe(MAX_OUTPUT_LENGTH_MODELS);
    expect(o.expected('m0:latest', null)).toBe(10);
    expect(o.expected('m1:latest', null)).toBeNull(); // the oldest went
    expect(o.expected('new:latest', null)).toBe(30);
  });
});
