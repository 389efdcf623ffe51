import { keepAliveMs } from './request-fields';

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
