import { keepAliveMs, runnerOptionsOf } from './request-fields';

describe('keepAliveMs (keep_alive as Ollama reads it)', () => {
  it.each([
    [0, 0],
    ['0', 0],
    ['0s', 0],
    [300, 300_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['250ms', 250],
    [-1, -1],
    ['-1', undefined], // a string must be a Go duration: Ollama refuses it (missing unit)
    ['-5m', -1],
    ['soon', undefined],
    ['5 minutes', undefined],
    [null, undefined],
    [undefined, undefined],
  ])('%p -> %p', (v, ms) => expect(keepAliveMs(v)).toBe(ms));
});

describe('runnerOptionsOf (the options Ollama compares with the loaded runner)', () => {
  it.each<[string, unknown, object]>([
    ['no options', { model: 'm' }, {}],
    ['options not an object', { options: 'fast' }, {}],
    ['options null', { options: null }, {}],
    [
      'every runner option',
      { options: { num_ctx: 8192, num_batch: 256, num_gpu: 20, use_mmap: false, num_thread: 8 }, shift: false },
      { numCtx: 8192, numBatch: 256, numGpu: 20, useMmap: false, numThread: 8, noShift: true },
    ],
    ['fractions truncated as Go reads an int', { options: { num_ctx: 4096.7 } }, { numCtx: 4096 }],
    ['a negative num_gpu (let Ollama decide) is no option', { options: { num_gpu: -1 } }, {}],
    ['num_gpu 0 (CPU only) is one', { options: { num_gpu: 0 } }, { numGpu: 0 }],
    [
      'wrong types ignored',
      { options: { num_ctx: '8192', use_mmap: 'no', num_thread: null, num_batch: Infinity } },
      {},
    ],
    ['shift true is the default', { shift: true }, {}],
    ['sampling options are not runner options', { options: { temperature: 0.2, num_predict: 10, seed: 1 } }, {}],
  ])('%s', (_what, body, want) => expect(runnerOptionsOf(body)).toEqual(want));

  it('a body that is not an object has none', () => {
    expect(runnerOptionsOf(null)).toEqual({});
    expect(runnerOptionsOf('x')).toEqual({});
  });
});
