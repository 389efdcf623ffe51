import * as http from 'http';
import { startSimServer, type SimConfig, type SimServer } from '@app/ollama-sim';
import { request, waitFor } from './helpers';

/** Today's Ollama features over plain HTTP: thinking, tools, format, logprobs, capabilities, reloads, route switches, seeds and continuation. */

const MODELS: SimConfig['models'] = [
  { name: 'qwen3:0.6b', sizeBytes: 500_000_000 }, // thinking family: completion, tools, thinking
  { name: 'llama3.2:latest', sizeBytes: 2_000_000_000 }, // completion, tools
  { name: 'gemma:2b', sizeBytes: 1_500_000_000, capabilities: ['completion'] },
  { name: 'base-model:1b', sizeBytes: 800_000_000, prefill: false },
  { name: 'nomic-embed-text', sizeBytes: 274_000_000, embedding: true, embeddingDims: 64 },
];

const WEATHER_SCHEMA = {
  type: 'object',
  properties: {
    city: { type: 'string' },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
    days: { type: 'integer', minimum: 1, maximum: 7 },
  },
  required: ['city', 'unit'],
};
const NATIVE_TOOLS = [
  {
    type: 'function',
    function: { name: 'get_weather', description: 'Weather for a city', parameters: WEATHER_SCHEMA },
  },
];

/** A small JSON Schema check (the keywords the simulator promises). Returns the first violation. */
function violates(schema: any, v: unknown, at = '$'): string | undefined {
  if (schema.enum && !schema.enum.some((e: unknown) => JSON.stringify(e) === JSON.stringify(v)))
    return `${at} not in enum`;
  switch (schema.type) {
    case 'object': {
      if (!v || typeof v !== 'object' || Array.isArray(v)) return `${at} not an object`;
      for (const k of schema.required ?? []) if (!(k in (v as object))) return `${at}.${k} missing`;
      for (const [k, s] of Object.entries(schema.properties ?? {})) {
        if (k in (v as object)) {
          const e = violates(s, (v as any)[k], `${at}.${k}`);
          if (e) return e;
        }
      }
      return undefined;
    }
    case 'array':
      if (!Array.isArray(v)) return `${at} not an array`;
      if (schema.minItems !== undefined && v.length < schema.minItems) return `${at} too short`;
      if (schema.maxItems !== undefined && v.length > schema.maxItems) return `${at} too long`;
      for (let i = 0; i < v.length; i++) {
        const e = violates(schema.items ?? {}, v[i], `${at}[${i}]`);
        if (e) return e;
      }
      return undefined;
    case 'string':
      return typeof v === 'string' ? undefined : `${at} not a string`;
    case 'integer':
    case 'number':
      if (typeof v !== 'number') return `${at} not a number`;
      if (schema.type === 'integer' && !Number.isInteger(v)) return `${at} not an integer`;
      if (schema.minimum !== undefined && v < schema.minimum) return `${at} below minimum`;
      if (schema.maximum !== undefined && v > schema.maximum) return `${at} above maximum`;
      return undefined;
    case 'boolean':
      return typeof v === 'boolean' ? undefined : `${at} not a boolean`;
  }
  return undefined;
}

const ndjson = (body: string): any[] =>
  body
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
/** SSE events as {event, data}; `data: [DONE]` as data "[DONE]". */
function sse(body: string): { event?: string; data: any }[] {
  return body
    .split('\n\n')
    .filter((b) => b.trim() !== '')
    .map((b) => {
      const ev = /^event: (.*)$/m.exec(b)?.[1];
      const d = /^data: (.*)$/m.exec(b)![1];
      return { event: ev, data: d === '[DONE]' ? d : JSON.parse(d) };
    });
}

describe('ollama-sim: today’s Ollama features', () => {
  const servers: SimServer[] = [];
  async function sim(cfg: SimConfig = {}): Promise<SimServer> {
    const s = await startSimServer({
      models: MODELS,
      loadMsPerGB: 0,
      tokensPerSecond: 1000,
      thinkingTokens: 4,
      defaultOutputTokens: 12,
      ...cfg,
    });
    servers.push(s);
    return s;
  }
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  describe('capabilities', () => {
    it('lists each model’s capabilities in /api/show and /api/tags, and context lengths', async () => {
      const s = await sim();
      const caps = async (model: string) =>
        JSON.parse((await request(s.url + '/api/show', { body: { model } })).body).capabilities;
      expect(await caps('qwen3:0.6b')).toEqual(['completion', 'tools', 'thinking']);
      expect(await caps('llama3.2')).toEqual(['completion', 'tools']);
      expect(await caps('gemma:2b')).toEqual(['completion']);
      expect(await caps('nomic-embed-text')).toEqual(['embedding']);
      const tags = JSON.parse((await request(s.url + '/api/tags')).body).models;
      expect(tags.find((m: any) => m.name === 'qwen3:0.6b').capabilities).toEqual(['completion', 'tools', 'thinking']);
      const show = JSON.parse((await request(s.url + '/api/show', { body: { model: 'llama3.2' } })).body);
      expect(show.model_info['llama.context_length']).toBe(131072);
    });

    it('refuses thinking and tools a model lacks, with Ollama’s messages', async () => {
      const s = await sim();
      const noThink = await request(s.url + '/api/chat', {
        body: { model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }], think: true },
      });
      expect([noThink.status, noThink.body]).toEqual([400, '{"error":"\\"llama3.2\\" does not support thinking"}']);
      const gen = await request(s.url + '/api/generate', { body: { model: 'gemma:2b', prompt: 'hi', think: 'high' } });
      expect([gen.status, JSON.parse(gen.body).error]).toEqual([400, '"gemma:2b" does not support thinking']);
      const noTools = await request(s.url + '/api/chat', {
        body: { model: 'gemma:2b', messages: [{ role: 'user', content: 'hi' }], tools: NATIVE_TOOLS },
      });
      expect([noTools.status, noTools.body]).toEqual([
        400,
        '{"error":"registry.ollama.ai/library/gemma:2b does not support tools"}',
      ]);
      const oai = await request(s.url + '/v1/chat/completions', {
        body: { model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }], reasoning_effort: 'high' },
      });
      expect([oai.status, JSON.parse(oai.body)]).toEqual([
        400,
        {
          error: {
            message: '"llama3.2" does not support thinking',
            type: 'invalid_request_error',
            param: null,
            code: null,
          },
        },
      ]);
      const badThink = await request(s.url + '/api/chat', {
        body: { model: 'qwen3:0.6b', messages: [{ role: 'user', content: 'hi' }], think: 'extreme' },
      });
      expect(JSON.parse(badThink.body).error).toBe(
        'invalid think value: "extreme" (must be "high", "medium", "low", "max", true, or false)',
      );
      // think:false is always accepted.
      expect(
        (
          await request(s.url + '/api/chat', {
            body: { model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }], think: false, stream: false },
          })
        ).status,
      ).toBe(200);
    });
  });

  describe('thinking', () => {
    it('streams message.thinking before content on /api/chat; think levels scale it; false turns it off', async () => {
      const s = await sim();
      const body = { model: 'qwen3:0.6b', messages: [{ role: 'user', content: 'Why is the sky blue?' }] };
      const lines = ndjson((await request(s.url + '/api/chat', { body })).body);
      const thinking = lines.filter((l) => l.message.thinking);
      const content = lines.filter((l) => l.message.content);
      expect(thinking).toHaveLength(4); // thinkingTokens; a thinking model thinks when `think` is left out
      expect(content).toHaveLength(12);
      expect(lines.findIndex((l) => l.message.content)).toBe(4); // every thinking chunk comes first
      for (const l of thinking) expect(l.message.content).toBe('');
      const done = lines[lines.length - 1];
      expect(done).toMatchObject({ done: true, done_reason: 'stop', eval_count: 16 });
      const high = ndjson((await request(s.url + '/api/chat', { body: { ...body, think: 'high' } })).body);
      expect(high.filter((l) => l.message.thinking)).toHaveLength(8);
      const off = ndjson((await request(s.url + '/api/chat', { body: { ...body, think: false } })).body);
      expect(off.filter((l) => l.message.thinking)).toHaveLength(0);
      expect(off.map((l) => l.message.content).join('')).toBe(content.map((l) => l.message.content).join(''));
      const whole = JSON.parse((await request(s.url + '/api/chat', { body: { ...body, stream: false } })).body);
      expect(whole.message.thinking).toBe(thinking.map((l) => l.message.thinking).join(''));
      expect(whole.message.content).toBe(content.map((l) => l.message.content).join(''));
    });

    it('generate carries `thinking`; OpenAI carries `reasoning` deltas; num_predict counts thinking tokens', async () => {
      const s = await sim();
      const gen = ndjson(
        (await request(s.url + '/api/generate', { body: { model: 'qwen3:0.6b', prompt: 'hi', think: true } })).body,
      );
      expect(gen.filter((l) => l.thinking)).toHaveLength(4);
      expect(gen[0]).toMatchObject({ response: '', done: false });
      const oai = sse(
        (
          await request(s.url + '/v1/chat/completions', {
            body: { model: 'qwen3:0.6b', stream: true, messages: [{ role: 'user', content: 'hi' }] },
          })
        ).body,
      );
      const chunks = oai.filter((e) => e.data !== '[DONE]').map((e) => e.data);
      expect(chunks[0].choices[0].delta).toMatchObject({
        role: 'assistant',
        content: '',
        reasoning: expect.any(String),
      });
      expect(chunks.filter((c) => c.choices[0]?.delta?.reasoning)).toHaveLength(4);
      expect(chunks.filter((c) => 'role' in (c.choices[0]?.delta ?? {}))).toHaveLength(1);
      expect(chunks[chunks.length - 1].choices[0]).toEqual({ index: 0, delta: {}, finish_reason: 'stop' });
      const short = ndjson(
        (
          await request(s.url + '/api/chat', {
            body: { model: 'qwen3:0.6b', messages: [{ role: 'user', content: 'hi' }], options: { num_predict: 6 } },
          })
        ).body,
      );
      expect(short.filter((l) => l.message.thinking)).toHaveLength(4);
      expect(short.filter((l) => l.message.content)).toHaveLength(2);
      expect(short[short.length - 1]).toMatchObject({ done_reason: 'length', eval_count: 6 });
    });
  });

  describe('tools', () => {
    it('calls a tool the last user message names, with arguments matching its schema, then answers from the tool result', async () => {
      const s = await sim();
      const ask = [{ role: 'user', content: 'Use get_weather for Paris' }];
      const lines = ndjson(
        (await request(s.url + '/api/chat', { body: { model: 'llama3.2', messages: ask, tools: NATIVE_TOOLS } })).body,
      );
      expect(lines).toHaveLength(2);
      const call = lines[0].message.tool_calls[0];
      expect(lines[0].message.content).toBe('');
      expect(call.id).toMatch(/^call_[a-z0-9]{8}$/);
      expect(call.function).toMatchObject({ index: 0, name: 'get_weather' });
      expect(violates(WEATHER_SCHEMA, call.function.arguments)).toBeUndefined();
      expect(lines[1]).toMatchObject({ done: true, done_reason: 'stop' });
      // No tool named: a plain answer.
      const plain = JSON.parse(
        (
          await request(s.url + '/api/chat', {
            body: {
              model: 'llama3.2',
              messages: [{ role: 'user', content: 'hello' }],
              tools: NATIVE_TOOLS,
              stream: false,
            },
          })
        ).body,
      );
      expect(plain.message.tool_calls).toBeUndefined();
      expect(plain.message.content.length).toBeGreaterThan(0);
      // The tool's result comes back: a normal answer that starts from it.
      const after = JSON.parse(
        (
          await request(s.url + '/api/chat', {
            body: {
              model: 'llama3.2',
              stream: false,
              tools: NATIVE_TOOLS,
              messages: [
                ...ask,
                {
                  role: 'assistant',
                  content: '',
                  tool_calls: [{ function: { name: 'get_weather', arguments: call.function.arguments } }],
                },
                { role: 'tool', tool_name: 'get_weather', content: 'Sunny, 21 degrees' },
              ],
            },
          })
        ).body,
      );
      expect(after.message.tool_calls).toBeUndefined();
      expect(after.message.content.startsWith('Sunny, 21 degrees ')).toBe(true);
      expect(after.done_reason).toBe('stop');
    });

    it('streams OpenAI tool_calls deltas as Ollama’s middleware writes them', async () => {
      const s = await sim();
      const r = await request(s.url + '/v1/chat/completions', {
        body: {
          model: 'llama3.2',
          stream: true,
          messages: [{ role: 'user', content: 'get_weather in Rome' }],
          tools: NATIVE_TOOLS,
        },
      });
      const chunks = sse(r.body)
        .filter((e) => e.data !== '[DONE]')
        .map((e) => e.data);
      expect(chunks).toHaveLength(2);
      const tc = chunks[0].choices[0].delta.tool_calls[0];
      expect(tc).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather' } });
      expect(violates(WEATHER_SCHEMA, JSON.parse(tc.function.arguments))).toBeUndefined();
      expect(chunks[1].choices[0].finish_reason).toBe('tool_calls');
    });
  });

  describe('format', () => {
    it('"json" gives valid JSON; a schema gives JSON that matches it (objects, arrays, enums, numbers, booleans, required)', async () => {
      const s = await sim();
      const json = JSON.parse(
        (
          await request(s.url + '/api/generate', {
            body: { model: 'llama3.2', prompt: 'json please', format: 'json', stream: false },
          })
        ).body,
      );
      expect(() => JSON.parse(json.response)).not.toThrow();
      const schema = {
        type: 'object',
        properties: {
          name: { type: 'string' },
          age: { type: 'integer', minimum: 18, maximum: 99 },
          score: { type: 'number', minimum: 0, maximum: 1 },
          active: { type: 'boolean' },
          tags: { type: 'array', items: { type: 'string', enum: ['a', 'b', 'c'] }, minItems: 2, maxItems: 4 },
          address: {
            type: 'object',
            properties: { city: { type: 'string' }, zip: { type: 'string' } },
            required: ['city'],
          },
        },
        required: ['name', 'age', 'tags', 'address'],
      };
      for (const content of ['first', 'second', 'third']) {
        const streamed = ndjson(
          (
            await request(s.url + '/api/chat', {
              body: { model: 'qwen3:0.6b', think: false, messages: [{ role: 'user', content }], format: schema },
            })
          ).body,
        );
        const text = streamed.map((l) => l.message.content).join('');
        expect(streamed.length).toBeGreaterThan(3); // the JSON arrives over several chunks
        expect(violates(schema, JSON.parse(text))).toBeUndefined();
        expect(streamed[streamed.length - 1].done_reason).toBe('stop');
      }
      const oai = JSON.parse(
        (
          await request(s.url + '/v1/chat/completions', {
            body: {
              model: 'llama3.2',
              messages: [{ role: 'user', content: 'x' }],
              response_format: { type: 'json_schema', json_schema: { name: 'p', schema } },
            },
          })
        ).body,
      );
      expect(violates(schema, JSON.parse(oai.choices[0].message.content))).toBeUndefined();
      const bad = await request(s.url + '/api/chat', {
        body: { model: 'llama3.2', messages: [{ role: 'user', content: 'x' }], format: 'yaml' },
      });
      expect([bad.status, JSON.parse(bad.body).error]).toEqual([
        500,
        'invalid format: "\\"yaml\\""; expected "json" or a valid JSON Schema object',
      ]);
    });
  });

  describe('logprobs', () => {
    it('puts per-token logprobs (with top_logprobs) on chat, generate and OpenAI chunks', async () => {
      const s = await sim();
      const lines = ndjson(
        (
          await request(s.url + '/api/chat', {
            body: {
              model: 'llama3.2',
              messages: [{ role: 'user', content: 'x' }],
              logprobs: true,
              top_logprobs: 3,
              options: { num_predict: 5 },
            },
          })
        ).body,
      );
      for (const l of lines.slice(0, 5)) {
        expect(l.logprobs).toHaveLength(1);
        expect(l.logprobs[0].token).toBe(l.message.content);
        expect(l.logprobs[0].logprob).toBeLessThanOrEqual(0);
        expect(l.logprobs[0].bytes).toEqual([...Buffer.from(l.message.content)]);
        expect(l.logprobs[0].top_logprobs).toHaveLength(3);
        expect(l.logprobs[0].top_logprobs[0].token).toBe(l.message.content);
      }
      const gen = JSON.parse(
        (
          await request(s.url + '/api/generate', {
            body: { model: 'llama3.2', prompt: 'x', logprobs: true, stream: false, options: { num_predict: 4 } },
          })
        ).body,
      );
      expect(gen.logprobs.map((p: any) => p.token).join('')).toBe(gen.response);
      expect(gen.logprobs[0].top_logprobs).toBeUndefined();
      const oai = JSON.parse(
        (
          await request(s.url + '/v1/chat/completions', {
            body: {
              model: 'llama3.2',
              messages: [{ role: 'user', content: 'x' }],
              logprobs: true,
              top_logprobs: 2,
              max_tokens: 3,
            },
          })
        ).body,
      );
      expect(oai.choices[0].logprobs.content.map((p: any) => p.token).join('')).toBe(oai.choices[0].message.content);
      const bad = await request(s.url + '/api/chat', {
        body: { model: 'llama3.2', messages: [{ role: 'user', content: 'x' }], logprobs: true, top_logprobs: 21 },
      });
      expect([bad.status, bad.body]).toEqual([400, '{"error":"top_logprobs must be between 0 and 20"}']);
    });
  });

  describe('runner options', () => {
    it('reloads the runner when num_ctx or shift differ, reports its context_length, and leaves it when they match', async () => {
      const s = await sim({ vramBytes: 16 * 1024 ** 3 });
      const chat = (extra: object) =>
        request(s.url + '/api/chat', {
          body: {
            model: 'llama3.2',
            stream: false,
            messages: [{ role: 'user', content: 'x' }],
            options: { num_predict: 1 },
            ...extra,
          },
        });
      const ps = async () => JSON.parse((await request(s.url + '/api/ps')).body).models[0].context_length;
      await chat({});
      expect(await ps()).toBe(4096); // below 23 GiB of VRAM Ollama defaults to 4k
      expect(s.stats()).toMatchObject({ loads: 1, reloads: 0 });
      await chat({ options: { num_predict: 1, num_ctx: 8192 } });
      expect(await ps()).toBe(8192);
      expect(s.stats()).toMatchObject({ loads: 2, reloads: 1 });
      await chat({ options: { num_predict: 1, num_ctx: 8192, temperature: 0.1 } }); // sampling options never reload
      expect(s.stats()).toMatchObject({ loads: 2, reloads: 1 });
      await chat({ options: { num_predict: 1, num_ctx: 8192 }, shift: false });
      expect(s.stats()).toMatchObject({ loads: 3, reloads: 2 });
      await chat({ options: { num_predict: 1, num_ctx: 1_000_000 } }); // capped at the trained context
      expect(await ps()).toBe(131072);
      const big = await sim({ vramBytes: 80 * 1024 ** 3, loaded: ['llama3.2'] });
      expect(JSON.parse((await request(big.url + '/api/ps')).body).models[0].context_length).toBe(131072); // 256k default, capped by the model
    });

    it('a reload waits for the running request, then costs a load', async () => {
      const s = await sim({ tokensPerSecond: 100, loadMsPerGB: 50 });
      const long = request(s.url + '/api/chat', {
        body: {
          model: 'llama3.2',
          stream: false,
          messages: [{ role: 'user', content: 'x' }],
          options: { num_predict: 30 },
        },
      });
      await waitFor(() => s.stats().active === 1);
      const other = await request(s.url + '/api/chat', {
        body: {
          model: 'llama3.2',
          stream: false,
          messages: [{ role: 'user', content: 'x' }],
          options: { num_predict: 1, num_batch: 256 },
        },
      });
      expect(other.status).toBe(200);
      expect((await long).status).toBe(200);
      expect(s.stats()).toMatchObject({ loads: 2, reloads: 1, active: 0, queued: 0 });
      expect(JSON.parse(other.body).load_duration).toBeGreaterThanOrEqual(50e6); // it waited for the new load (2 GB x 50 ms)
    });

    it('embed honours dimensions and truncate:false', async () => {
      const s = await sim({ promptTokensPerSecond: 1_000_000 });
      const e = JSON.parse(
        (
          await request(s.url + '/api/embed', {
            body: { model: 'nomic-embed-text', input: ['a', 'b'], dimensions: 16 },
          })
        ).body,
      );
      expect(e.embeddings).toHaveLength(2);
      expect(e.embeddings[0]).toHaveLength(16);
      expect(Math.hypot(...e.embeddings[0])).toBeCloseTo(1, 5);
      const full = JSON.parse(
        (await request(s.url + '/api/embed', { body: { model: 'nomic-embed-text', input: 'a' } })).body,
      );
      expect(full.embeddings[0]).toHaveLength(64);
      const long = 'word '.repeat(3000);
      expect((await request(s.url + '/api/embed', { body: { model: 'nomic-embed-text', input: long } })).status).toBe(
        200,
      );
      const refused = await request(s.url + '/api/embed', {
        body: { model: 'nomic-embed-text', input: long, truncate: false },
      });
      expect([refused.status, refused.body]).toEqual([400, '{"error":"the input length exceeds the context length"}']);
      const oai = JSON.parse(
        (
          await request(s.url + '/v1/embeddings', {
            body: { model: 'nomic-embed-text', input: 'a', dimensions: 8, encoding_format: 'float' },
          })
        ).body,
      );
      expect(oai.data[0].embedding).toHaveLength(8);
    });
  });

  describe('routes', () => {
    it('/api/status answers {"cloud":{...}}', async () => {
      const s = await sim();
      const r = await request(s.url + '/api/status');
      expect([r.status, JSON.parse(r.body)]).toEqual([200, { cloud: { disabled: false, source: 'none' } }]);
    });

    it('a route switched off answers Gin’s plain 404 like an older Ollama, and counts nothing', async () => {
      const s = await sim({ routes: { messages: false, responses: false, status: false } });
      for (const [path, body] of [
        ['/v1/messages', { model: 'llama3.2', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }],
        ['/v1/responses', { model: 'llama3.2', input: 'x' }],
        ['/api/status', undefined],
      ] as const) {
        const r = await request(s.url + path, { body });
        expect([path, r.status, r.body, r.headers['content-type']]).toEqual([
          path,
          404,
          '404 page not found',
          'text/plain',
        ]);
      }
      expect(s.stats().models['llama3.2:latest'].requests).toBe(0);
      // The other routes are untouched, and a switch can be flipped at run time.
      expect(
        (
          await request(s.url + '/api/chat', {
            body: { model: 'llama3.2', stream: false, messages: [{ role: 'user', content: 'x' }] },
          })
        ).status,
      ).toBe(200);
      await s.update({ routes: { messages: true } });
      expect(
        (
          await request(s.url + '/v1/messages', {
            body: { model: 'llama3.2', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] },
          })
        ).status,
      ).toBe(200);
    });

    it('an unset switch follows `version`: 0.12.3 has none of the new routes, 0.13.3 has /v1/responses only', async () => {
      const old = await sim({ version: '0.12.3' });
      expect((await request(old.url + '/v1/responses', { body: { model: 'llama3.2', input: 'x' } })).body).toBe(
        '404 page not found',
      );
      expect(
        (await request(old.url + '/v1/messages', { body: { model: 'llama3.2', max_tokens: 5, messages: [] } })).body,
      ).toBe('404 page not found');
      expect((await request(old.url + '/api/status')).status).toBe(404);
      const mid = await sim({ version: '0.13.3' });
      expect((await request(mid.url + '/v1/responses', { body: { model: 'llama3.2', input: 'x' } })).status).toBe(200);
      expect(
        (
          await request(mid.url + '/v1/messages', {
            body: { model: 'llama3.2', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] },
          })
        ).status,
      ).toBe(404);
      await expect(sim({ routes: { messages: 'yes' } as any })).rejects.toThrow(
        'ollama-sim: routes.messages must be true or false, got "yes"',
      );
      await expect(sim({ routes: { audio: false } as any })).rejects.toThrow(/routes.audio is not a route switch/);
    });

    it('/v1/messages errors in Anthropic’s shape', async () => {
      const s = await sim();
      const shape = async (body: unknown) => {
        const r = await request(s.url + '/v1/messages', { body });
        const j = JSON.parse(r.body);
        expect(j.request_id).toMatch(/^req_[0-9a-f]{24}$/);
        return [r.status, { type: j.type, error: j.error }];
      };
      expect(await shape({ model: 'llama3.2', messages: [{ role: 'user', content: 'x' }] })).toEqual([
        400,
        {
          type: 'error',
          error: { type: 'invalid_request_error', message: 'max_tokens is required and must be positive' },
        },
      ]);
      expect(await shape({ model: 'llama3.2', max_tokens: 5, messages: [] })).toEqual([
        400,
        { type: 'error', error: { type: 'invalid_request_error', message: 'messages is required' } },
      ]);
      expect(await shape({ max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })).toEqual([
        400,
        { type: 'error', error: { type: 'invalid_request_error', message: 'model is required' } },
      ]);
      expect(await shape({ model: 'ghost', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })).toEqual([
        404,
        { type: 'error', error: { type: 'not_found_error', message: 'model "ghost" not found, try pulling it first' } },
      ]);
      await s.update({ faults: { busy503: true } });
      expect(await shape({ model: 'llama3.2', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })).toEqual([
        503,
        {
          type: 'error',
          error: {
            type: 'overloaded_error',
            message: 'server busy, please try again.  maximum pending requests exceeded',
          },
        },
      ]);
      // thinking on a model without the capability is dropped on this route (Ollama's relax_thinking), not refused.
      await s.update({ faults: { busy503: false } });
      const relaxed = await request(s.url + '/v1/messages', {
        body: {
          model: 'llama3.2',
          max_tokens: 50,
          thinking: { type: 'enabled', budget_tokens: 10 },
          messages: [{ role: 'user', content: 'x' }],
        },
      });
      expect(relaxed.status).toBe(200);
      expect(JSON.parse(relaxed.body).content.map((b: any) => b.type)).toEqual(['text']);
    });

    it('/v1/responses streams Ollama’s event sequence, text and function calls', async () => {
      const s = await sim();
      const r = await request(s.url + '/v1/responses', {
        body: { model: 'qwen3:0.6b', input: 'hi', stream: true, max_output_tokens: 100 },
      });
      const events = sse(r.body);
      const types = events.map((e) => e.event);
      expect(types.slice(0, 3)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added']);
      expect(types.filter((t) => t === 'response.reasoning_summary_text.delta')).toHaveLength(4);
      expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(12);
      expect(types.slice(-4)).toEqual([
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        'response.completed',
      ]);
      events.forEach((e, i) => expect([e.data.type, e.data.sequence_number]).toEqual([e.event, i]));
      const completed = events[events.length - 1].data.response;
      expect(completed).toMatchObject({
        status: 'completed',
        usage: { input_tokens: expect.any(Number), output_tokens: 16 },
        max_output_tokens: 100,
      });
      expect(completed.output.map((o: any) => o.type)).toEqual(['reasoning', 'message']);
      const text = events
        .filter((e) => e.event === 'response.output_text.delta')
        .map((e) => e.data.delta)
        .join('');
      expect(completed.output[1].content[0].text).toBe(text);
      const tools = [{ type: 'function', name: 'get_weather', description: 'w', parameters: WEATHER_SCHEMA }];
      const call = JSON.parse(
        (await request(s.url + '/v1/responses', { body: { model: 'llama3.2', input: 'get_weather for Oslo', tools } }))
          .body,
      );
      expect(call.output).toHaveLength(1);
      expect(call.output[0]).toMatchObject({
        type: 'function_call',
        status: 'completed',
        name: 'get_weather',
        call_id: expect.stringMatching(/^call_/),
      });
      expect(violates(WEATHER_SCHEMA, JSON.parse(call.output[0].arguments))).toBeUndefined();
      const bad = await request(s.url + '/v1/responses', { body: { model: 'llama3.2', input: [{ type: 'mystery' }] } });
      expect([bad.status, JSON.parse(bad.body).error.message]).toEqual([
        400,
        'input[0]: unknown input item type: "mystery"',
      ]);
    });
  });

  describe('seed and continuation', () => {
    const ask = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Tell me about rivers' },
    ];

    it('the same request and seed give the same tokens; another seed gives others; options.seed beats the instance seed', async () => {
      const a = await sim({ seed: 1 });
      const b = await sim({ seed: 1 });
      const c = await sim({ seed: 2 });
      const text = async (s: SimServer, extra: object = {}) =>
        JSON.parse(
          (await request(s.url + '/api/chat', { body: { model: 'llama3.2', stream: false, messages: ask, ...extra } }))
            .body,
        ).message.content;
      expect(await text(a)).toBe(await text(b));
      expect(await text(a)).not.toBe(await text(c));
      expect(await text(a, { options: { seed: 7 } })).toBe(await text(c, { options: { seed: 7 } }));
      expect(await text(a, { options: { seed: 7 } })).not.toBe(await text(a));
    });

    /** Streams the uninterrupted answer as chunks of text (and the final counters) on one surface. */
    type Surface = {
      name: string;
      run: (s: SimServer, messages: object[], extra?: object) => Promise<{ chunks: string[]; evalCount: number }>;
    };
    const surfaces: Surface[] = [
      {
        name: '/api/chat',
        run: async (s, messages, extra = {}) => {
          const lines = ndjson(
            (
              await request(s.url + '/api/chat', {
                body: { model: 'qwen3:0.6b', messages, options: { seed: 11 }, ...extra },
              })
            ).body,
          );
          return {
            chunks: lines.filter((l) => !l.done && l.message.content).map((l) => l.message.content),
            evalCount: lines[lines.length - 1].eval_count,
          };
        },
      },
      {
        name: '/v1/chat/completions',
        run: async (s, messages, extra = {}) => {
          const chunks = sse(
            (
              await request(s.url + '/v1/chat/completions', {
                body: {
                  model: 'qwen3:0.6b',
                  messages,
                  seed: 11,
                  stream: true,
                  stream_options: { include_usage: true },
                  ...extra,
                },
              })
            ).body,
          )
            .filter((e) => e.data !== '[DONE]')
            .map((e) => e.data);
          return {
            chunks: chunks.map((c) => c.choices[0]?.delta?.content).filter((t) => t),
            evalCount: chunks[chunks.length - 1].usage.completion_tokens,
          };
        },
      },
      {
        name: '/v1/messages',
        run: async (s, messages, extra = {}) => {
          const system = (messages as any[])
            .filter((m) => m.role === 'system')
            .map((m) => m.content)
            .join('');
          const rest = (messages as any[]).filter((m) => m.role !== 'system');
          const events = sse(
            (
              await request(s.url + '/v1/messages', {
                body: { model: 'qwen3:0.6b', system, messages: rest, max_tokens: 1000, stream: true, ...extra },
              })
            ).body,
          );
          const deltas = events.filter((e) => e.data.delta?.type === 'text_delta').map((e) => e.data.delta.text);
          return {
            chunks: deltas,
            evalCount: events.find((e) => e.event === 'message_delta')!.data.usage.output_tokens,
          };
        },
      },
    ];

    for (const surface of surfaces) {
      it(`${surface.name}: prefix + continuation == the uninterrupted answer at every cut, counters cover only the continuation`, async () => {
        const s = await sim({ seed: 3 });
        const whole = await surface.run(s, ask);
        expect(whole.chunks).toHaveLength(12);
        expect(whole.evalCount).toBe(16); // 4 thinking + 12 answer tokens
        const full = whole.chunks.join('');
        for (const cut of [1, 5, 11]) {
          const prefix = whole.chunks.slice(0, cut).join('');
          const rest = await surface.run(s, [...ask, { role: 'assistant', content: prefix }]);
          expect([cut, prefix + rest.chunks.join('')]).toEqual([cut, full]);
          expect(rest.chunks).toEqual(whole.chunks.slice(cut)); // same chunk boundaries, no thinking again
          expect(rest.evalCount).toBe(12 - cut);
        }
        // A cut inside a chunk continues with the rest of that chunk.
        const mid = full.slice(0, whole.chunks[0].length + 2);
        const rest = await surface.run(s, [...ask, { role: 'assistant', content: mid }]);
        expect(mid + rest.chunks.join('')).toBe(full);
      });
    }

    it('a stream cut mid-answer on one instance is completed by another from the text delivered (what a balancer resume does)', async () => {
      const broken = await sim({ faults: { stopMidStreamAfterChunks: 6 } });
      const healthy = await sim();
      const body = {
        model: 'qwen3:0.6b',
        max_tokens: 1000,
        stream: true,
        messages: [{ role: 'user', content: 'Tell me about rivers' }],
      };
      // What arrived before the socket died: message_start, 4 thinking deltas, then 2 text deltas.
      const partial = await new Promise<string>((resolve) => {
        let got = '';
        const req = http.request(broken.url + '/v1/messages', { method: 'POST', agent: false }, (res) => {
          res.setEncoding('utf8');
          res.on('data', (c: string) => (got += c));
          res.on('error', () => resolve(got));
          res.on('end', () => resolve(got));
        });
        req.on('error', () => resolve(got));
        req.end(JSON.stringify(body));
      });
      const delivered = sse(partial)
        .filter((e) => e.data.delta?.type === 'text_delta')
        .map((e) => e.data.delta.text)
        .join('');
      expect(sse(partial).filter((e) => e.data.delta?.type === 'text_delta')).toHaveLength(2);
      expect(sse(partial).some((e) => e.event === 'message_stop')).toBe(false);
      const uninterrupted = sse((await request(healthy.url + '/v1/messages', { body })).body)
        .filter((e) => e.data.delta?.type === 'text_delta')
        .map((e) => e.data.delta.text)
        .join('');
      const resumed = sse(
        (
          await request(healthy.url + '/v1/messages', {
            body: { ...body, messages: [...body.messages, { role: 'assistant', content: delivered }] },
          })
        ).body,
      );
      const rest = resumed
        .filter((e) => e.data.delta?.type === 'text_delta')
        .map((e) => e.data.delta.text)
        .join('');
      expect(delivered + rest).toBe(uninterrupted);
      expect(resumed.some((e) => e.data.content_block?.type === 'thinking')).toBe(false);
    });

    it('with num_predict the resumed request asks for the tokens still missing and ends the same way', async () => {
      const s = await sim();
      const run = async (messages: object[], n: number) =>
        ndjson(
          (
            await request(s.url + '/api/chat', {
              body: { model: 'llama3.2', messages, options: { num_predict: n, seed: 5 } },
            })
          ).body,
        );
      const whole = await run(ask, 20);
      const chunks = whole.filter((l) => !l.done).map((l) => l.message.content);
      const cut = 8;
      const rest = await run([...ask, { role: 'assistant', content: chunks.slice(0, cut).join('') }], 20 - cut);
      expect(
        chunks.slice(0, cut).join('') +
          rest
            .filter((l) => !l.done)
            .map((l) => l.message.content)
            .join(''),
      ).toBe(chunks.join(''));
      expect(rest[rest.length - 1]).toMatchObject({ done_reason: 'length', eval_count: 12 });
    });

    it('a model without prefill answers afresh after a trailing assistant message; a prefix the model would not say gets its own words', async () => {
      const s = await sim();
      const text = async (model: string, messages: object[]) =>
        JSON.parse((await request(s.url + '/api/chat', { body: { model, stream: false, messages } })).body);
      const whole = (await text('base-model:1b', ask)).message.content;
      const prefix = whole.split(' ').slice(0, 3).join(' ');
      const again = await text('base-model:1b', [...ask, { role: 'assistant', content: prefix }]);
      expect(again.message.content.startsWith(whole.slice(prefix.length))).toBe(false);
      expect(again.eval_count).toBe(12);
      const odd = await text('llama3.2', [...ask, { role: 'assistant', content: 'Certainly not' }]);
      expect(odd.message.content).toMatch(/^ \S/); // carries on after the prefix
      expect(odd.eval_count).toBeGreaterThan(0);
    });
  });
});
