/**
 * What Ollama does with model names and keep_alive, read from its sources at
 * github.com/ollama/ollama commit fb30760996871fa9460115c753afd2c60d4ab0f7:
 *
 * - types/model/name.go `ParseNameBare`: a ":" after the last "/" starts the tag, then the last
 *   "/" splits off the model, the next one the namespace, and the rest is the host (an optional
 *   "scheme://" dropped). `ParseName` = `Merge(ParseNameBare(s), DefaultName())`: host
 *   registry.ollama.ai, namespace library, tag latest where left out. `cutPromised`: a part whose
 *   separator is there but which is empty ("llama3.2:") stays missing, never defaulted.
 *   `Name.DisplayShortest`: host and namespace only when not the defaults (compared with
 *   strings.EqualFold), then `model:tag`. The parse cases below are from name_test.go
 *   `TestParseNameParts`.
 * - server/routes.go `getExistingName`: every handler (generate, chat, embed, show, pull, push,
 *   delete, copy) replaces each part of the requested name with the stored one that matches it
 *   under strings.EqualFold: names are case-insensitive. So the simulator, which lower-cases,
 *   matched Ollama, and the balancer, which compared case-sensitively, did not ("Llama3.2" was
 *   "not found" on a backend that serves it).
 * - api/types.go `Duration.UnmarshalJSON` (the type of every request's keep_alive): a JSON number
 *   is seconds (`time.Duration(t * float64(time.Second))`), a string goes to Go's
 *   `time.ParseDuration` and an error there fails the request (400), and a negative result of
 *   either is `math.MaxInt64` (kept loaded for good). null leaves the pointer nil (absent).
 *   Cases from api/types_test.go `TestKeepAliveParsingFromJSON`.
 * - Go's src/time/format.go `ParseDuration`; cases from src/time/time_test.go
 *   `parseDurationTests` and `parseDurationErrorTests`.
 */
import { displayModelName, keepAliveMs, normaliseModelName, parseGoDuration, parseModelName } from '.';

describe('model names as Ollama reads them (types/model/name.go)', () => {
  it.each([
    [
      'registry.ollama.ai/library/dolphin-mistral:7b-v2.6-dpo-laser-q6_K',
      ['registry.ollama.ai', 'library', 'dolphin-mistral', '7b-v2.6-dpo-laser-q6_K'],
    ],
    ['scheme://host:port/namespace/model:tag', ['host:port', 'namespace', 'model', 'tag']],
    ['host/namespace/model:tag', ['host', 'namespace', 'model', 'tag']],
    ['host:port/namespace/model:tag', ['host:port', 'namespace', 'model', 'tag']],
    ['host/namespace/model', ['host', 'namespace', 'model', 'latest']],
    ['host:port/namespace/model', ['host:port', 'namespace', 'model', 'latest']],
    ['namespace/model', ['registry.ollama.ai', 'namespace', 'model', 'latest']],
    ['model', ['registry.ollama.ai', 'library', 'model', 'latest']],
    ['h/nn/mm:t', ['h', 'nn', 'mm', 't']],
  ])('ParseName(%s) (TestParseNameParts, defaults merged)', (input, [host, namespace, model, tag]) => {
    expect(parseModelName(input)).toEqual({ host, namespace, model, tag });
  });

  it.each([
    ['llama3.2', 'llama3.2:latest'],
    ['registry.ollama.ai/library/llama3.2:1b', 'llama3.2:1b'],
    ['REGISTRY.ollama.ai/Library/llama3.2', 'llama3.2:latest'],
    ['library/qwen2.5:7b', 'qwen2.5:7b'],
    ['ns/model:7b', 'ns/model:7b'],
    ['registry.local:5000/ns/model', 'registry.local:5000/ns/model:latest'],
    ['hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M', 'hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M'],
  ])('DisplayShortest(ParseName(%s)) = %s, case kept', (input, shown) => {
    expect(displayModelName(parseModelName(input))).toBe(shown);
  });

  it.each([
    ['llama3.2', 'llama3.2:latest'],
    ['llama3.2:latest', 'llama3.2:latest'],
    ['Llama3.2:Latest', 'llama3.2:latest'],
    ['registry.ollama.ai/library/LLAMA3.2', 'llama3.2:latest'],
    ['library/llama3.2:latest', 'llama3.2:latest'],
    ['qwen2.5:7b', 'qwen2.5:7b'],
    ['registry.local:5000/team/model', 'registry.local:5000/team/model:latest'],
    ['hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M', 'hf.co/bartowski/llama-3.2-1b-instruct-gguf:q4_k_m'],
    ['  llama3.2  ', 'llama3.2:latest'],
    ['', ''],
  ])('normaliseModelName(%p) = %p: the key Ollama matches with EqualFold (getExistingName)', (input, key) => {
    expect(normaliseModelName(input)).toBe(key);
  });

  it('a promised but empty part stays empty, so it matches no real model (cutPromised)', () => {
    expect(normaliseModelName('llama3.2:')).toBe('llama3.2:');
    expect(normaliseModelName('/llama3.2')).toBe('/llama3.2:latest');
    expect(normaliseModelName('llama3.2:')).not.toBe(normaliseModelName('llama3.2'));
  });
});

describe("Go's time.ParseDuration (src/time/format.go), in ms", () => {
  const ms = 1;
  const s = 1000;
  const m = 60 * s;
  const h = 60 * m;
  const us = 1e-3;
  const ns = 1e-6;
  it.each([
    ['0', 0],
    ['5s', 5 * s],
    ['30s', 30 * s],
    ['1478s', 1478 * s],
    ['-5s', -5 * s],
    ['+5s', 5 * s],
    ['-0', 0],
    ['+0', 0],
    ['5.0s', 5 * s],
    ['5.6s', 5 * s + 600 * ms],
    ['5.s', 5 * s],
    ['.5s', 500 * ms],
    ['1.004s', 1 * s + 4 * ms],
    ['100.00100s', 100 * s + 1 * ms],
    ['10ns', 10 * ns],
    ['11us', 11 * us],
    ['12µs', 12 * us],
    ['12μs', 12 * us],
    ['13ms', 13 * ms],
    ['15m', 15 * m],
    ['16h', 16 * h],
    ['3h30m', 3 * h + 30 * m],
    ['10.5s4m', 4 * m + 10.5 * s],
    ['-2m3.4s', -(2 * m + 3.4 * s)],
    ['1h2m3s4ms5us6ns', 1 * h + 2 * m + 3 * s + 4 * ms + 5 * us + 6 * ns],
    ['39h9m14.425s', 39 * h + 9 * m + 14.425 * s],
    ['0.100000000000000000000h', 6 * m],
  ])('parseDurationTests %p', (input, want) => {
    expect(parseGoDuration(input)).toBeCloseTo(want, 6);
  });

  it.each([
    '',
    '3',
    '-',
    's',
    '.',
    '-.',
    '.s',
    '+.s',
    '1d',
    '\uFFFD',
    '9223372036854775810ns',
    '9223372036854775808ns',
    '3000000h',
    ' 5m',
    '5 m',
    '5mm',
  ])('parseDurationErrorTests %p: an error', (input) => expect(parseGoDuration(input)).toBeUndefined());
});

describe("keep_alive as Ollama's api.Duration.UnmarshalJSON reads it (api/types.go), in ms", () => {
  it.each([
    [42, 42_000], // "Positive Integer"
    [42.5, 42_500], // "Positive Float"
    ['42m', 42 * 60_000], // "Positive Integer String"
    [-1, -1], // "Negative Integer": MaxInt64, kept for good
    [-3.14, -1], // "Negative Float"
    ['-1m', -1], // "Negative Integer String"
    [0, 0],
    ['0', 0],
    ['0s', 0],
    ['-0s', 0], // zero, not negative: unloads
    [300, 300_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['250ms', 250],
    [9e9, 9e12], // 285 years: still a Go Duration
    [9.3e9, -1], // past int64 nanoseconds: saturated, kept for good
    [1e300, -1],
    [Number.MAX_VALUE, -1],
  ])('%p -> %p', (v, want) => expect(keepAliveMs(v)).toBe(want));

  it.each([
    ['9300000000s', 'ParseDuration: overflows int64, "invalid duration"'],
    [Infinity, 'not JSON'],
    [undefined, 'absent'],
    [null, 'null: the pointer stays nil'],
    ['10', 'ParseDuration: missing unit, so Ollama answers 400'],
    ['-1', 'missing unit'],
    ['soon', 'not a duration'],
    ['5 minutes', 'not a duration'],
    [true, 'unsupported type'],
    [{}, 'unsupported type'],
  ])('%p is not a keep_alive Ollama accepts (%s)', (v, _why) => expect(keepAliveMs(v)).toBeUndefined());
});
