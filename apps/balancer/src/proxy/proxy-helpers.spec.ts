import { namespaceOf } from './cluster-api.service';
import { keepAliveMs } from './proxy.service';
import { lastLine } from './request-records';

const b = (s: string) => Buffer.from(s);

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

describe("namespaceOf (owned_by on /v1/models, as Ollama's model.ParseName reads a name)", () => {
  it.each([
    ['llama3.2', 'library'],
    ['llama3.2:latest', 'library'],
    ['jmorgan/mistral:7b', 'jmorgan'],
    ['hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M', 'bartowski'],
    ['registry.ollama.ai/library/qwen2.5:7b', 'library'],
  ])('%s -> %s', (name, ns) => expect(namespaceOf(name)).toBe(ns));
});

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
