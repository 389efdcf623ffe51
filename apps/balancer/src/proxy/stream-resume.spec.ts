import { loadBalancerConfig } from '../config/balancer-config';
import {
  continuationBody,
  DeliveredStream,
  modelMatches,
  readDelivered,
  resumeSurfaceOf,
  StreamSplicer,
} from './stream-resume';

const b = (s: string) => Buffer.from(s);
const chat = (content: string, extra = '') =>
  `{"model":"m","message":{"role":"assistant","content":${JSON.stringify(content)}${extra}},"done":false}\n`;

describe('resumeSurfaceOf: which requests may be resumed', () => {
  const msgs = [{ role: 'user', content: 'hi' }];
  it('takes streamed chats on the three chat surfaces, for the listed models', () => {
    expect(resumeSurfaceOf('/api/chat', { messages: msgs }, true, 'llama3.2:latest', ['*'])).toBe('ollama');
    expect(
      resumeSurfaceOf('/v1/chat/completions', { messages: msgs }, true, 'llama3.2:latest', ['llama3.2:latest']),
    ).toBe('openai');
    expect(resumeSurfaceOf('/v1/messages', { messages: msgs }, true, 'qwen3:8b', ['qwen3:*'])).toBe('anthropic');
    expect(resumeSurfaceOf('/api/chat', { messages: msgs }, true, 'other:latest', ['llama3.2:latest'])).toBeNull();
  });
  it('refuses generate, responses, structured output, several choices and non-streamed answers', () => {
    expect(resumeSurfaceOf('/api/generate', { messages: msgs }, true, 'm', ['*'])).toBeNull();
    expect(resumeSurfaceOf('/v1/responses', { messages: msgs }, true, 'm', ['*'])).toBeNull();
    expect(resumeSurfaceOf('/api/chat', { messages: msgs, format: 'json' }, true, 'm', ['*'])).toBeNull();
    expect(
      resumeSurfaceOf('/v1/chat/completions', { messages: msgs, response_format: { type: 'json_object' } }, true, 'm', [
        '*',
      ]),
    ).toBeNull();
    expect(
      resumeSurfaceOf('/v1/chat/completions', { messages: msgs, response_format: { type: 'text' } }, true, 'm', ['*']),
    ).toBe('openai');
    expect(resumeSurfaceOf('/v1/chat/completions', { messages: msgs, n: 2 }, true, 'm', ['*'])).toBeNull();
    expect(resumeSurfaceOf('/api/chat', { messages: msgs }, false, 'm', ['*'])).toBeNull();
    expect(resumeSurfaceOf('/api/chat', { messages: 'x' }, true, 'm', ['*'])).toBeNull();
  });
  it('reads STREAM_RESUME_MODELS as Ollama names', () => {
    const c = loadBalancerConfig({ OLLAMA_BACKENDS: 'http://a:1', STREAM_RESUME_MODELS: 'Llama3.2, qwen3:*' });
    expect(c.streamResumeModels).toEqual(['llama3.2:latest', 'qwen3:*']);
    expect(modelMatches('qwen3:0.6b', c.streamResumeModels)).toBe(true);
    expect(modelMatches('qwen3-coder:latest', c.streamResumeModels)).toBe(false);
    expect(loadBalancerConfig({ OLLAMA_BACKENDS: 'http://a:1', STREAM_RESUME: 'off' }).streamResume).toBe(false);
    expect(() => loadBalancerConfig({ OLLAMA_BACKENDS: 'http://a:1', STREAM_RESUME: 'maybe' })).toThrow(
      'STREAM_RESUME="maybe"',
    );
    expect(() => loadBalancerConfig({ OLLAMA_BACKENDS: 'http://a:1', STREAM_RESUME_MODELS: 'a b' })).toThrow(
      'STREAM_RESUME_MODELS="a b"',
    );
  });
});

describe('DeliveredStream: only whole lines and events reach the client', () => {
  it('passes whole chunks by reference and holds a partial line until it completes', () => {
    const d = new DeliveredStream('ollama', {});
    const one = b(chat('a'));
    expect(d.take(one)).toBe(one);
    expect(d.take(b('{"model":"m","mess'))).toBeNull();
    expect(d.take(b('age":{"content":"b"}}\n{"x"'))!.toString()).toBe('{"model":"m","message":{"content":"b"}}\n');
    expect(d.rest()!.toString()).toBe('{"x"');
  });
  it('cuts SSE at the blank line that ends an event', () => {
    const d = new DeliveredStream('anthropic', {});
    expect(d.take(b('event: a\ndata: {}\n\nevent: b\n'))!.toString()).toBe('event: a\ndata: {}\n\n');
    expect(d.take(b('data: {}\n\n'))!.toString()).toBe('event: b\ndata: {}\n\n');
    expect(d.text()).toBe('event: a\ndata: {}\n\nevent: b\ndata: {}\n\n');
  });
});

describe('readDelivered: what the client has, and when it cannot be continued', () => {
  it('reads Ollama chat text and tokens, thinking included in the count', () => {
    const raw = chat('', ',"thinking":"hm"') + chat('Hello') + chat(' world');
    expect(readDelivered('ollama', raw)).toEqual({ text: 'Hello world', tokens: 3 });
    expect(readDelivered('ollama', chat('', ',"thinking":"hm"'))).toBe('thinking was streaming');
    expect(readDelivered('ollama', chat('', ',"tool_calls":[{"function":{"name":"f","arguments":{}}}]'))).toBe(
      'a tool call was streamed',
    );
  });
  it('reads OpenAI chunks with their ids', () => {
    const ev = (delta: object) =>
      `data: ${JSON.stringify({ id: 'c1', created: 5, model: 'm', choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;
    const got = readDelivered('openai', ev({ role: 'assistant', content: 'Hi' }) + ev({ content: ' there' }));
    expect(got).toEqual({
      text: 'Hi there',
      tokens: 2,
      openai: { id: 'c1', created: 5, model: 'm', system_fingerprint: undefined },
    });
    expect(readDelivered('openai', ev({ role: 'assistant', content: '', reasoning: 'x' }))).toBe(
      'thinking was streaming',
    );
    expect(readDelivered('openai', ev({ tool_calls: [{ id: 'call_1' }] }))).toBe('a tool call was streamed');
  });
  it('reads the open Anthropic text block', () => {
    const sse = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    const raw =
      sse('message_start', { message: { id: 'msg_1' } }) +
      sse('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '' } }) +
      sse('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 't' } }) +
      sse('content_block_stop', { index: 0 }) +
      sse('content_block_start', { index: 1, content_block: { type: 'text', text: '' } }) +
      sse('content_block_delta', { index: 1, delta: { type: 'text_delta', text: 'Yes' } });
    expect(readDelivered('anthropic', raw)).toEqual({ text: 'Yes', tokens: 2, openIndex: 1 });
    expect(
      readDelivered(
        'anthropic',
        raw +
          sse('content_block_stop', { index: 1 }) +
          sse('content_block_start', { index: 2, content_block: { type: 'tool_use' } }),
      ),
    ).toBe('a tool call was streamed');
  });
});

describe('continuationBody', () => {
  it('appends the delivered text as the assistant turn and lowers the output limit', () => {
    const req = { model: 'm', messages: [{ role: 'user', content: 'q' }], options: { seed: 1, num_predict: 10 } };
    expect(JSON.parse(continuationBody('ollama', req, { text: 'abc', tokens: 4 }).toString())).toEqual({
      model: 'm',
      messages: [
        { role: 'user', content: 'q' },
        { role: 'assistant', content: 'abc' },
      ],
      options: { seed: 1, num_predict: 6 },
    });
    expect(req.messages).toHaveLength(1);
    const prefilled = {
      model: 'm',
      max_tokens: 5,
      messages: [
        { role: 'user', content: 'q' },
        { role: 'assistant', content: 'Sure: ' },
      ],
    };
    const out = JSON.parse(continuationBody('anthropic', prefilled, { text: 'one', tokens: 9 }).toString());
    expect(out.messages[1]).toEqual({ role: 'assistant', content: 'Sure: one' });
    expect(out.max_tokens).toBe(1);
    expect(
      continuationBody(
        'anthropic',
        { messages: [{ role: 'assistant', content: [{ type: 'text', text: 'x' }] }] },
        { text: 'a', tokens: 1 },
      ),
    ).toBe('the client prefilled the answer with content blocks');
  });
});

describe('StreamSplicer', () => {
  it('OpenAI: the first id and created, no second role, usage for the whole answer', () => {
    const s = new StreamSplicer('openai', {
      text: 'x',
      tokens: 3,
      openai: { id: 'c1', created: 1, model: 'm', system_fingerprint: 'fp' },
    });
    const out = s
      .transform(
        b(
          'data: {"id":"c2","created":2,"model":"m","choices":[{"delta":{"role":"assistant","content":"y"}}]}\n\ndata: {"id":"c2","created":2,"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}\n\ndata: [DONE]\n\n',
        ),
      )
      .toString();
    const evs = out.split('\n\n').filter((e) => e !== '');
    expect(JSON.parse(evs[0].slice(6))).toEqual({
      id: 'c1',
      created: 1,
      model: 'm',
      system_fingerprint: 'fp',
      choices: [{ delta: { content: 'y' } }],
    });
    expect(JSON.parse(evs[1].slice(6)).usage).toEqual({ prompt_tokens: 4, completion_tokens: 5, total_tokens: 9 });
    expect(evs[2]).toBe('data: [DONE]');
  });
  it('Anthropic: continues the open block; a tool_use first closes it and numbers after it', () => {
    const sse = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    const s = new StreamSplicer('anthropic', { text: 'x', tokens: 2, openIndex: 1 });
    const out = s.transform(
      b(
        sse('message_start', {}) +
          sse('content_block_start', { index: 0, content_block: { type: 'tool_use' } }) +
          sse('content_block_stop', { index: 0 }) +
          sse('message_delta', { usage: { output_tokens: 3 } }),
      ),
    );
    expect(out.toString()).toBe(
      sse('content_block_stop', { index: 1 }) +
        sse('content_block_start', { index: 2, content_block: { type: 'tool_use' } }) +
        sse('content_block_stop', { index: 2 }) +
        sse('message_delta', { usage: { output_tokens: 5 } }),
    );
  });
  it('Ollama: lines pass as they are, the done line counts the whole answer; a partial line waits', () => {
    const s = new StreamSplicer('ollama', { text: 'x', tokens: 4 });
    expect(s.transform(b(chat('a') + '{"done":true,"eval_'))).toEqual(b(chat('a')));
    expect(JSON.parse(s.transform(b('count":2}\n')).toString())).toEqual({ done: true, eval_count: 6 });
  });
});
