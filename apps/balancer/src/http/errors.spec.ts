import { errorBody, errorSurface, midStreamError } from './errors';

describe('errorBody: each surface its own shape', () => {
  it("gives Anthropic's shape on /v1/messages with its type per status", () => {
    const types: Record<number, string> = {
      400: 'invalid_request_error',
      401: 'authentication_error',
      403: 'permission_error',
      404: 'not_found_error',
      413: 'request_too_large',
      429: 'rate_limit_error',
      500: 'api_error',
      502: 'api_error',
      503: 'overloaded_error',
    };
    const ids = new Set<string>();
    for (const [status, type] of Object.entries(types)) {
      const body = JSON.parse(errorBody('/v1/messages', Number(status), 'm'));
      expect(body).toEqual({ type: 'error', error: { type, message: 'm' }, request_id: expect.any(String) });
      // As Ollama's anthropic.NewError: req_ and 12 random bytes in hex, a new one each time.
      expect(body.request_id).toMatch(/^req_[0-9a-f]{24}$/);
      ids.add(body.request_id);
    }
    expect(ids.size).toBe(Object.keys(types).length);
    expect(JSON.parse(errorBody('/v1/messages?beta=true', 404, 'm')).type).toBe('error');
  });

  it("gives OpenAI's shape on the rest of /v1 and Ollama's elsewhere", () => {
    expect(JSON.parse(errorBody('/v1/responses', 503, 'busy'))).toEqual({
      error: { message: 'busy', type: 'api_error', param: null, code: null },
    });
    expect(JSON.parse(errorBody('/v1/messagesx', 404, 'm')).error.type).toBe('not_found_error');
    expect(JSON.parse(errorBody('/api/chat', 400, 'bad'))).toEqual({ error: 'bad' });
    expect(errorSurface(undefined)).toBe('ollama');
  });
});

describe('midStreamError', () => {
  it('ends an Anthropic stream with an error event its SDK throws on', () => {
    expect(midStreamError('text/event-stream', 'cut', '/v1/messages')).toBe(
      'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"cut"}}\n\n',
    );
  });

  it('ends NDJSON with an error line and OpenAI SSE with an error data event', () => {
    expect(midStreamError('application/x-ndjson', 'cut', '/api/chat')).toBe('{"error":"cut"}\n');
    expect(midStreamError('text/event-stream; charset=utf-8', 'cut', '/v1/chat/completions')).toBe(
      'data: {"error":{"message":"cut","type":"api_error","param":null,"code":null}}\n\n',
    );
    expect(midStreamError('application/json', 'cut')).toBeNull();
  });
});
