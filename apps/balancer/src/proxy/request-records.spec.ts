import { lastLine, numberField, RequestRecord, RequestRecords } from './request-records';

const observer = new RequestRecords();
const record = (): RequestRecord => ({
  id: 'r',
  method: 'POST',
  path: '/api/chat',
  model: null,
  backend: null,
  reason: null,
  status: undefined,
  bytes: 0,
  ttfbMs: null,
  queuedMs: 0,
  retries: 0,
  attempts: 0,
  startedAt: 0,
  error: null,
  apiKey: null,
  priorityClass: null,
});
const b = (s: string) => Buffer.from(s);

describe("RequestRecords.finalChunk (Ollama's counters from the final line)", () => {
  it('reads every counter of a streamed chat final chunk', () => {
    const r = record();
    const final = {
      model: 'llama3.2',
      created_at: '2026-11-26T00:00:00Z',
      message: { role: 'assistant', content: '' },
      done_reason: 'stop',
      done: true,
      total_duration: 912345678,
      load_duration: 2345678,
      prompt_eval_count: 26,
      prompt_eval_duration: 130079000,
      eval_count: 259,
      eval_duration: 4232710000,
    };
    observer.finalChunk(
      r,
      b(`{"model":"llama3.2","message":{"role":"assistant","content":"Hi"},"done":false}\n${JSON.stringify(final)}\n`),
    );
    expect([r.evalCount, r.evalDurationNs, r.promptEvalCount, r.promptEvalDurationNs, r.loadDurationNs]).toEqual([
      259, 4232710000, 26, 130079000, 2345678,
    ]);
  });

  it('is not fooled by the same names inside the answer text or a long context array', () => {
    const r = record();
    const text = 'Ollama reports "eval_count": 99999 and "done":true like this: {"eval_count":12345}';
    const line = JSON.stringify({
      model: 'm',
      response: text,
      done: true,
      done_reason: 'stop',
      context: Array.from({ length: 3000 }, (_, i) => i),
      total_duration: 5,
      load_duration: 6,
      prompt_eval_count: 7,
      prompt_eval_duration: 8,
      eval_count: 9,
      eval_duration: 10,
    });
    observer.finalChunk(r, b(line));
    expect([r.evalCount, r.evalDurationNs, r.promptEvalCount, r.promptEvalDurationNs, r.loadDurationNs]).toEqual([
      9, 10, 7, 8, 6,
    ]);
  });

  it('leaves the counters unset when the line is not a final one or a counter is missing', () => {
    const notDone = record();
    observer.finalChunk(notDone, b('{"model":"m","response":"x","done":false,"eval_count":3}\n'));
    expect(notDone.evalCount).toBeUndefined();
    const partial = record();
    observer.finalChunk(partial, b('{"done":true,"eval_count":3}'));
    expect(partial.evalCount).toBe(3);
    expect(partial.evalDurationNs).toBeUndefined();
    expect(partial.loadDurationNs).toBeUndefined();
  });

  it('reads numbers with spaces, fractions and exponents, and refuses non-numbers', () => {
    expect(numberField(b('{"eval_count": 42}'), b('"eval_count":'))).toBe(42);
    expect(numberField(b('{"x":1.5e3}'), b('"x":'))).toBe(1500);
    expect(numberField(b('{"x":-2}'), b('"x":'))).toBe(-2);
    expect(numberField(b('{"x":"12"}'), b('"x":'))).toBeUndefined();
    expect(numberField(b('{"x":null}'), b('"x":'))).toBeUndefined();
    expect(numberField(b('{"x":1e999}'), b('"x":'))).toBeUndefined();
    expect(numberField(b('{"x":12345678901234567890}'), b('"x":'))).toBe(Number('12345678901234567890'));
  });
});

describe('RequestRecords.finalEvents (each surface from its own final event)', () => {
  const at = (path: string): RequestRecord => ({ ...record(), path, ttfbMs: 5, startedAt: Date.now() - 20 });

  it("reads Anthropic's message_delta usage, not message_start's estimate", () => {
    const r = at('/v1/messages');
    const start = `event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":99,"output_tokens":0}}}\n\n`;
    const end = `event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":12,"output_tokens":34}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n`;
    observer.finalEvents(
      r,
      [b(start), b('event: content_block_delta\ndata: {"text":"\\"output_tokens\\": 7"}\n\n'), b(end)],
      true,
    );
    expect([r.promptEvalCount, r.evalCount]).toEqual([12, 34]);
    expect(r.evalDurationNs).toBeGreaterThanOrEqual(0);
  });

  it("reads Responses' response.completed usage and OpenAI's usage chunk", () => {
    const r = at('/v1/responses');
    observer.finalEvents(
      r,
      [
        b(
          'event: response.completed\ndata: {"type":"response.completed","sequence_number":9,"response":{"output":[],"usage":{"input_tokens":3,"input_tokens_details":{"cached_tokens":0},"output_tokens":8,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":11}}}\n\n',
        ),
      ],
      true,
    );
    expect([r.promptEvalCount, r.evalCount]).toEqual([3, 8]);
    const o = at('/v1/chat/completions');
    observer.finalEvents(
      o,
      [
        b('data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":6,"total_tokens":10}}\n\n'),
        b('data: [DONE]\n\n'),
      ],
      true,
    );
    expect([o.promptEvalCount, o.evalCount]).toEqual([4, 6]);
  });

  it('leaves the counters unset when the answer carried none, and reads Ollama as before', () => {
    const o = at('/v1/chat/completions');
    observer.finalEvents(o, [b('data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'), b('data: [DONE]\n\n')], true);
    expect(o.evalCount).toBeUndefined();
    const n = at('/api/chat');
    observer.finalEvents(n, [b('{"done":false}\n'), b('{"done":true,"eval_count":5,"eval_duration":100}\n')], true);
    expect([n.evalCount, n.evalDurationNs]).toEqual([5, 100]);
  });
});

describe('lastLine (the final NDJSON object, however the stream was chunked)', () => {
  it('returns the last chunk when the final line starts inside it', () => {
    const chunks = [b('{"a":1}\n'), b('{"b":2}\n{"done":true}\n')];
    expect(lastLine(chunks)).toBe(chunks[1]);
  });
  it('joins chunks when the final line spans several', () => {
    const chunks = [b('{"x":1}\n{"done":tr'), b('ue,"eval_co'), b('unt":5}\n')];
    const joined = lastLine(chunks).toString();
    const line = joined.trim().split('\n').pop()!;
    expect(JSON.parse(line)).toEqual({ done: true, eval_count: 5 });
  });
  it('handles a single whole-body chunk (stream:false)', () => {
    const chunks = [b('{"done":true,"eval_count":3}')];
    expect(JSON.parse(lastLine(chunks).toString())).toEqual({ done: true, eval_count: 3 });
  });
});
