import { readTokenUsage, tailOf, usageSurface } from './token-usage';

const b = (s: string): Buffer => Buffer.from(s);

describe('readTokenUsage', () => {
  it("reads Ollama's final object (chat, generate, embed)", () => {
    const chat =
      '{"model":"m","message":{"role":"assistant","content":"hi"},"done":false}\n{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":5,"prompt_eval_count":26,"prompt_eval_duration":1,"eval_count":298,"eval_duration":4}\n';
    expect(readTokenUsage('ollama', b(chat))).toEqual({ promptTokens: 26, outputTokens: 298 });
    expect(
      readTokenUsage(
        'ollama',
        b('{"model":"m","embeddings":[[0.1,0.2]],"total_duration":1,"load_duration":1,"prompt_eval_count":8}'),
      ),
    ).toEqual({ promptTokens: 8, outputTokens: 0 });
    // A prompt answered from the cache may leave prompt_eval_count out.
    expect(readTokenUsage('ollama', b('{"done":true,"eval_count":3}'))).toEqual({ promptTokens: 0, outputTokens: 3 });
  });

  it("reads OpenAI's usage, streamed (include_usage) or not, and not a quoted look-alike in the content", () => {
    const stream =
      'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"say \\"prompt_tokens\\": 99"}}]}\n\n' +
      'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' +
      'data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}\n\n' +
      'data: [DONE]\n\n';
    expect(readTokenUsage('openai', b(stream))).toEqual({ promptTokens: 12, outputTokens: 7 });
    expect(readTokenUsage('openai', b(stream.replace(/data: \{[^\n]*"usage"[^\n]*\n\n/, '')))).toBeNull();
    expect(
      readTokenUsage(
        'openai',
        b('{"object":"list","data":[{"embedding":[0.1]}],"model":"m","usage":{"prompt_tokens":5,"total_tokens":5}}'),
      ),
    ).toEqual({ promptTokens: 5, outputTokens: 0 });
  });

  it("reads Anthropic message_delta usage and the Responses API's completed usage", () => {
    const messages =
      'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":10,"output_tokens":0}}}\n\n' +
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}\n\n' +
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":10,"output_tokens":42}}\n\n' +
      'event: message_stop\ndata: {"type":"message_stop"}\n\n';
    expect(readTokenUsage('anthropic', b(messages))).toEqual({ promptTokens: 10, outputTokens: 42 });
    const responses =
      'event: response.completed\ndata: {"type":"response.completed","sequence_number":9,"response":{"id":"r","max_output_tokens":null,"output":[],"usage":{"input_tokens":31,"input_tokens_details":{"cached_tokens":0},"output_tokens":8,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":39}}}\n\n';
    expect(readTokenUsage('anthropic', b(responses))).toEqual({ promptTokens: 31, outputTokens: 8 });
  });

  it('knows each surface by path', () => {
    expect(
      [
        '/api/chat',
        '/api/generate',
        '/api/embed',
        '/api/embeddings',
        '/v1/chat/completions',
        '/v1/completions',
        '/v1/embeddings',
        '/v1/messages',
        '/v1/responses',
      ].map(usageSurface),
    ).toEqual(['ollama', 'ollama', 'ollama', 'none', 'openai', 'openai', 'openai', 'anthropic', 'anthropic']);
  });

  it('searches only the last 4 KB of the recent chunks, joined when they are small', () => {
    const big = Buffer.alloc(10_000, 'x');
    expect(tailOf([big]).length).toBe(4096);
    const parts = [b('{"usage":{"prompt_'), b('tokens":3,"completion_tokens":4}}')];
    expect(readTokenUsage('openai', tailOf(parts))).toEqual({ promptTokens: 3, outputTokens: 4 });
    expect(tailOf([]).length).toBe(0);
  });
});
