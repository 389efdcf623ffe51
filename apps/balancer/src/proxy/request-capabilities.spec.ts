import { neededCapabilities } from './request-capabilities';

describe('neededCapabilities (what Ollama would check for the request)', () => {
  const user = (content: unknown) => [{ role: 'user', content }];
  const tools = [{ type: 'function', function: { name: 'f' } }];

  it('reads tools, think and images on /api/chat and /api/generate', () => {
    expect(neededCapabilities('/api/chat', { messages: user('hi') })).toEqual([]);
    expect(neededCapabilities('/api/chat', { tools, messages: user('hi') })).toEqual(['tools']);
    expect(neededCapabilities('/api/chat', { tools: [], think: false, messages: user('hi') })).toEqual([]);
    expect(
      neededCapabilities('/api/chat', { think: 'high', messages: [{ role: 'user', content: 'x', images: ['a'] }] }),
    ).toEqual(['thinking', 'vision']);
    expect(neededCapabilities('/api/generate', { think: true, prompt: 'x' })).toEqual(['thinking']);
    expect(neededCapabilities('/api/generate', { think: true, raw: true, prompt: 'x' })).toEqual([]);
    expect(neededCapabilities('/api/generate', { images: ['a'], prompt: 'x' })).toEqual(['vision']);
  });

  it('reads the OpenAI and Anthropic surfaces in their own words', () => {
    expect(neededCapabilities('/v1/chat/completions', { reasoning_effort: 'none', messages: user('x') })).toEqual([]);
    expect(
      neededCapabilities('/v1/chat/completions', {
        reasoning_effort: 'low',
        tools,
        messages: user([{ type: 'image_url', image_url: { url: 'data:' } }]),
      }),
    ).toEqual(['tools', 'thinking', 'vision']);
    expect(
      neededCapabilities('/v1/responses', {
        reasoning: { effort: 'medium' },
        input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }],
      }),
    ).toEqual(['thinking', 'vision']);
    expect(neededCapabilities('/v1/responses', { input: 'plain string' })).toEqual([]);
    // Ollama drops thinking on /v1/messages for a model without it (relax_thinking): not a need.
    expect(
      neededCapabilities('/v1/messages', {
        thinking: { type: 'enabled' },
        tools: [{ name: 't' }],
        messages: user([{ type: 'image', source: {} }]),
      }),
    ).toEqual(['tools', 'vision']);
    expect(neededCapabilities('/api/embed', { tools })).toEqual([]);
  });

  it('is not thrown by values of the wrong type', () => {
    expect(neededCapabilities('/api/chat', { tools: 'x', think: 1, messages: [null, 5, { images: 'a' }] })).toEqual([]);
    expect(neededCapabilities('/v1/chat/completions', { reasoning: [], messages: { length: 3 } })).toEqual([]);
  });
});
