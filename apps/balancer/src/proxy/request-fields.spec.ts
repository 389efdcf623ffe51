import { continuesConversation, keepAliveMs, runnerOptionsOf } from './request-fields';

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

describe('continuesConversation (whether the prompt is likely in the prompt cache already)', () => {
  const chat = (...roles: unknown[]) => ({ messages: roles.map((role) => ({ role, content: 'x' })) });
  it.each<[string, string, unknown, boolean]>([
    ['a first question', '/api/chat', chat('system', 'user'), false],
    ['a second turn', '/api/chat', chat('system', 'user', 'assistant', 'user'), true],
    ['a trailing assistant message only (a prefill)', '/api/chat', chat('user', 'assistant'), false],
    ['an OpenAI second turn', '/v1/chat/completions', chat('user', 'assistant', 'user'), true],
    ['an Anthropic second turn', '/v1/messages', chat('user', 'assistant', 'user'), true],
    ['a Responses second turn', '/v1/responses', { input: chat('user', 'assistant', 'user').messages }, true],
    ['a Responses string input', '/v1/responses', { input: 'hi' }, false],
    ['generate with the context of an earlier answer', '/api/generate', { prompt: 'x', context: [1, 2, 3] }, true],
    ['generate with an empty context', '/api/generate', { prompt: 'x', context: [] }, false],
    ['generate without context', '/api/generate', { prompt: 'x' }, false],
    ['generate with a context that is not an array', '/api/generate', { prompt: 'x', context: '1,2' }, false],
    ['a completion', '/v1/completions', { prompt: 'x', messages: chat('user', 'assistant', 'user').messages }, false],
    // Hostile shapes: read only when of the expected type, never converted, never thrown on.
    ['messages not an array', '/api/chat', { messages: { 0: { role: 'assistant' }, length: 2 } }, false],
    [
      'null and scalar messages',
      '/api/chat',
      { messages: [null, 7, 'assistant', ['assistant'], { role: 'user' }] },
      false,
    ],
    ['a role that is not a string', '/api/chat', chat(['assistant'], { toString: () => 'assistant' }, 'user'), false],
    ['no body fields at all', '/api/chat', {}, false],
    ['a null body', '/api/chat', null, false],
  ])('%s -> %p', (_what, path, body, expected) => expect(continuesConversation(path, body)).toBe(expected));

  it('never calls a value it reads (an object whose toString throws)', () => {
    const hostile = {
      toString() {
        throw new Error('converted');
      },
    };
    expect(() => continuesConversation('/api/chat', { messages: [{ role: hostile }, { role: 'user' }] })).not.toThrow();
    expect(continuesConversation('/api/chat', { messages: [{ role: hostile }, { role: 'user' }] })).toBe(false);
  });
});
