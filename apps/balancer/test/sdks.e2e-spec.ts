import Anthropic from '@anthropic-ai/sdk';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOllama } from '@langchain/ollama';
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { createOllama } from 'ollama-ai-provider-v2';
import { Cluster, request, startCluster } from './harness';

/**
 * The client libraries of today's Ollama users, through the balancer (two simulators; b1 lacks
 * /v1/messages, as a build without it would): each checks what came back, not only that it did.
 */

const WEATHER = {
  type: 'object',
  properties: {
    city: { type: 'string' },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
  },
  required: ['city', 'unit'],
} as const;
const OLLAMA_TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather for a city', parameters: WEATHER } },
];
const SIM = { loadMsPerGB: 0, tokensPerSecond: 1000, numParallel: 4, thinkingTokens: 5, defaultOutputTokens: 10 };
const MODELS = [
  { name: 'llama3.2:latest', sizeBytes: 2_019_393_189 },
  { name: 'qwen3:0.6b', sizeBytes: 522_653_767 },
];

function expectWeatherArgs(args: any): void {
  expect(typeof args.city).toBe('string');
  expect(['celsius', 'fahrenheit']).toContain(args.unit);
}

describe('real clients through the balancer', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster([
      { ...SIM, models: MODELS, routes: { messages: false } },
      { ...SIM, models: MODELS },
    ]);
  });
  afterAll(() => c.close());

  describe('ollama-js', () => {
    const client = () => new Ollama({ host: c.url });

    it('think: thinking streams before the content, and a model without it gets Ollama’s 400', async () => {
      const messages = [{ role: 'user', content: 'Why is the sky blue?' }];
      const parts: { thinking?: string; content: string }[] = [];
      for await (const p of await client().chat({ model: 'qwen3:0.6b', messages, think: true, stream: true }))
        parts.push(p.message);
      expect(parts.filter((p) => p.thinking)).toHaveLength(5);
      expect(parts.findIndex((p) => p.content)).toBe(5);
      expect(
        parts
          .map((p) => p.content)
          .join('')
          .split(' '),
      ).toHaveLength(10);
      await expect(client().chat({ model: 'llama3.2', messages, think: true })).rejects.toMatchObject({
        status_code: 400,
        error: '"llama3.2" does not support thinking',
      });
    });

    it('tools: a tool call, then an answer from the tool result', async () => {
      const messages: any[] = [{ role: 'user', content: 'Call get_weather for Paris' }];
      const first = await client().chat({ model: 'llama3.2', messages, tools: OLLAMA_TOOLS as any });
      expect(first.message.tool_calls).toHaveLength(1);
      expect(first.message.tool_calls![0].function.name).toBe('get_weather');
      expectWeatherArgs(first.message.tool_calls![0].function.arguments);
      messages.push(first.message, { role: 'tool', content: '18 degrees and rain', tool_name: 'get_weather' });
      const second = await client().chat({ model: 'llama3.2', messages, tools: OLLAMA_TOOLS as any });
      expect(second.message.content.startsWith('18 degrees and rain ')).toBe(true);
    });

    it('format: a JSON schema gives JSON that matches it; logprobs come per token', async () => {
      const schema = {
        type: 'object',
        properties: { name: { type: 'string' }, age: { type: 'integer', minimum: 0, maximum: 120 } },
        required: ['name', 'age'],
      };
      const r = await client().chat({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'Describe a person' }],
        format: schema,
      });
      const v = JSON.parse(r.message.content);
      expect(typeof v.name).toBe('string');
      expect(Number.isInteger(v.age) && v.age >= 0 && v.age <= 120).toBe(true);
      const lp = await request(`${c.url}/api/chat`, {
        body: {
          model: 'llama3.2',
          stream: false,
          logprobs: true,
          top_logprobs: 2,
          messages: [{ role: 'user', content: 'hi' }],
        },
      });
      expect(lp.status).toBe(200);
      expect(lp.body.logprobs).toHaveLength(10);
      expect(lp.body.logprobs[0].top_logprobs).toHaveLength(2);
    });
  });

  describe('openai', () => {
    const client = () => new OpenAI({ baseURL: c.url + '/v1', apiKey: 'x', maxRetries: 0 });
    const tools: OpenAI.Chat.ChatCompletionTool[] = [
      { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: WEATHER as any } },
    ];

    it('tools streamed with stream_options.include_usage; usage reaches the metrics', async () => {
      const stream = await client().chat.completions.create({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'get_weather for Lima' }],
        tools,
        stream: true,
        stream_options: { include_usage: true },
      });
      const calls: { name: string; args: string }[] = [];
      let finish: string | null = null;
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of stream) {
        for (const tc of chunk.choices[0]?.delta?.tool_calls ?? []) {
          calls[tc.index] ??= { name: '', args: '' };
          calls[tc.index].name += tc.function?.name ?? '';
          calls[tc.index].args += tc.function?.arguments ?? '';
        }
        finish = chunk.choices[0]?.finish_reason ?? finish;
        if (chunk.usage) usage = chunk.usage;
      }
      expect(calls).toHaveLength(1);
      expect(calls[0].name).toBe('get_weather');
      expectWeatherArgs(JSON.parse(calls[0].args));
      expect(finish).toBe('tool_calls');
      expect(usage?.completion_tokens).toBeGreaterThan(0);
      const metrics = (await request(`${c.url}/metrics`)).text;
      expect(metrics).toMatch(/balancer_eval_tokens_total\{model="llama3\.2:latest",backend="b\d"\} [1-9]/);
    });

    it('reasoning_effort and logprobs pass through', async () => {
      const stream = await client().chat.completions.create({
        model: 'qwen3:0.6b',
        messages: [{ role: 'user', content: 'hi' }],
        reasoning_effort: 'low',
        stream: true,
      });
      const kinds: string[] = [];
      for await (const chunk of stream) {
        const d: any = chunk.choices[0]?.delta ?? {};
        if (d.reasoning) kinds.push('r');
        if (d.content) kinds.push('c');
      }
      expect(kinds.join('')).toBe('rrr' + 'c'.repeat(10));
      const lp = await client().chat.completions.create({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'hi' }],
        logprobs: true,
        top_logprobs: 1,
      });
      expect(lp.choices[0].logprobs?.content).toHaveLength(10);
    });

    it('responses.create, whole and streamed, and a function call', async () => {
      const r = await client().responses.create({
        model: 'llama3.2',
        input: 'Tell me a fact',
        instructions: 'Be brief',
      });
      expect(r.status).toBe('completed');
      expect(r.output_text.split(' ')).toHaveLength(10);
      let text = '';
      const types: string[] = [];
      for await (const e of await client().responses.create({
        model: 'llama3.2',
        input: 'Tell me a fact',
        instructions: 'Be brief',
        stream: true,
      })) {
        types.push(e.type);
        if (e.type === 'response.output_text.delta') text += e.delta;
      }
      expect(types[0]).toBe('response.created');
      expect(types[types.length - 1]).toBe('response.completed');
      expect(text).toBe(r.output_text);
      const call = await client().responses.create({
        model: 'llama3.2',
        input: 'get_weather in Kyiv',
        tools: [{ type: 'function', name: 'get_weather', parameters: WEATHER as any, strict: false }],
      });
      const fc = call.output.find((o) => o.type === 'function_call') as OpenAI.Responses.ResponseFunctionToolCall;
      expect(fc.name).toBe('get_weather');
      expectWeatherArgs(JSON.parse(fc.arguments));
    });
  });

  describe('@anthropic-ai/sdk against /v1/messages (b1 lacks the route)', () => {
    const client = () => new Anthropic({ baseURL: c.url, apiKey: 'x', maxRetries: 0 });

    it('messages.create and messages.stream: text, thinking, usage; only b2 answers', async () => {
      const m = await client().messages.create({
        model: 'llama3.2',
        max_tokens: 100,
        system: 'Be brief',
        messages: [{ role: 'user', content: 'Hello' }],
      });
      expect(m.content.map((b) => b.type)).toEqual(['text']);
      expect((m.content[0] as Anthropic.TextBlock).text.split(' ')).toHaveLength(10);
      expect(m.usage.output_tokens).toBe(10);
      const stream = client().messages.stream({
        model: 'qwen3:0.6b',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'Stream please' }],
      });
      let text = '';
      stream.on('text', (d) => (text += d));
      const final = await stream.finalMessage();
      expect(final.content.map((b) => b.type)).toEqual(['thinking', 'text']);
      expect((final.content[1] as Anthropic.TextBlock).text).toBe(text);
      expect(final.usage.output_tokens).toBe(15);
      const { response } = await client()
        .messages.create({ model: 'llama3.2', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] })
        .withResponse();
      expect(response.headers.get('x-balancer-backend')).toBe('b2');
    });

    it('tools: tool_use (whole and streamed), then a tool_result turn', async () => {
      const tools: Anthropic.Tool[] = [{ name: 'get_weather', description: 'Weather', input_schema: WEATHER as any }];
      const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'Please get_weather for Oslo' }];
      const m = await client().messages.create({ model: 'llama3.2', max_tokens: 200, tools, messages });
      expect(m.stop_reason).toBe('tool_use');
      const use = m.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock;
      expect(use.name).toBe('get_weather');
      expectWeatherArgs(use.input);
      const streamed = await client()
        .messages.stream({ model: 'llama3.2', max_tokens: 200, tools, messages })
        .finalMessage();
      expectWeatherArgs((streamed.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock).input);
      const next = await client().messages.create({
        model: 'llama3.2',
        max_tokens: 200,
        tools,
        messages: [
          ...messages,
          { role: 'assistant', content: m.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'Snow, -3' }] },
        ],
      });
      expect((next.content[0] as Anthropic.TextBlock).text.startsWith('Snow, -3 ')).toBe(true);
    });

    it('errors are the SDK’s typed errors', async () => {
      await expect(
        client().messages.create({ model: 'ghost', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
      ).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    });
  });

  describe('LangChain and the AI SDK', () => {
    it('ChatOllama.bindTools: tool_calls with the tool’s name and schema-shaped args', async () => {
      const llm = new ChatOllama({ baseUrl: c.url, model: 'llama3.2' }).bindTools([
        { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: WEATHER as any } },
      ]);
      const msg = await llm.invoke('Use get_weather for Madrid');
      expect(msg.tool_calls).toHaveLength(1);
      expect(msg.tool_calls![0].name).toBe('get_weather');
      expectWeatherArgs(msg.tool_calls![0].args);
    });

    it('ollama-ai-provider-v2: a tool call, its execution, the answer that uses it', async () => {
      const weather = tool({
        description: 'Weather for a city',
        inputSchema: jsonSchema<{ city: string; unit: string }>(WEATHER as any),
        execute: async ({ city }) => `Sunny in ${city}`,
      });
      const r = await generateText({
        model: createOllama({ baseURL: c.url + '/api' })('llama3.2'),
        prompt: 'What does get_weather say for Berlin?',
        tools: { get_weather: weather },
        stopWhen: stepCountIs(2),
      });
      const call = r.steps[0].toolCalls[0];
      expect(call.toolName).toBe('get_weather');
      expect(r.text.startsWith(`Sunny in ${(call.input as any).city} `)).toBe(true);
    });

    it('@ai-sdk/openai-compatible: a streamed tool call against /v1', async () => {
      const provider = createOpenAICompatible({ name: 'ollama', baseURL: c.url + '/v1' });
      const r = streamText({
        model: provider.chatModel('llama3.2'),
        prompt: 'get_weather for Quito',
        tools: { get_weather: tool({ description: 'Weather', inputSchema: jsonSchema(WEATHER as any) }) },
      });
      const calls = await r.toolCalls;
      expect(calls).toHaveLength(1);
      expect(calls[0].toolName).toBe('get_weather');
      expectWeatherArgs(calls[0].input);
    });
  });
});

describe('resumed streams through the SDKs', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster([
      { ...SIM, tokensPerSecond: 40, defaultOutputTokens: 24, models: MODELS },
      { ...SIM, tokensPerSecond: 40, defaultOutputTokens: 24, models: MODELS },
    ]);
  });
  afterAll(() => c.close());
  afterEach(async () => {
    for (const s of c.sims) await s.update({ faults: { stopMidStreamAfterChunks: undefined } as any });
  });

  const resumes = async () => {
    let n = 0;
    for (const line of (await request(`${c.url}/metrics`)).text.split('\n'))
      if (line.startsWith('balancer_stream_resumes_total{')) n += Number(line.split(' ').pop());
    return n;
  };
  let before = 0;
  beforeEach(async () => {
    before = await resumes();
  });

  /** A fetch that cuts the serving simulator's stream a few chunks in (the moment its headers arrive). */
  const cuttingFetch: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    const backend = res.headers.get('x-balancer-backend');
    if (backend !== null)
      await c.sims[Number(backend.slice(1)) - 1].update({ faults: { stopMidStreamAfterChunks: 3 } });
    return res;
  };

  it('openai: the spliced stream parses as one answer with the uninterrupted text', async () => {
    const ask = {
      model: 'llama3.2',
      messages: [{ role: 'user' as const, content: 'Tell me about rivers' }],
      seed: 5,
      stream: true as const,
    };
    const collect = async (client: OpenAI) => {
      let text = '';
      const ids = new Set<string>();
      for await (const chunk of await client.chat.completions.create(ask)) {
        ids.add(chunk.id);
        text += chunk.choices[0]?.delta?.content ?? '';
      }
      return { text, ids };
    };
    const whole = await collect(new OpenAI({ baseURL: c.url + '/v1', apiKey: 'x', maxRetries: 0 }));
    const cut = await collect(new OpenAI({ baseURL: c.url + '/v1', apiKey: 'x', maxRetries: 0, fetch: cuttingFetch }));
    expect(cut.text).toBe(whole.text);
    expect(cut.ids.size).toBe(1);
    expect(await resumes()).toBe(before + 1);
  });

  it('Anthropic: messages.stream ends in one final message with the uninterrupted text', async () => {
    const ask = {
      model: 'llama3.2',
      max_tokens: 100,
      messages: [{ role: 'user' as const, content: 'Tell me about rivers' }],
    };
    const whole = await new Anthropic({ baseURL: c.url, apiKey: 'x', maxRetries: 0 }).messages
      .stream(ask)
      .finalMessage();
    const cut = await new Anthropic({ baseURL: c.url, apiKey: 'x', maxRetries: 0, fetch: cuttingFetch }).messages
      .stream(ask)
      .finalMessage();
    expect(cut.content).toEqual(whole.content);
    expect(cut.usage.output_tokens).toBe(whole.usage.output_tokens);
    expect(cut.stop_reason).toBe('end_turn');
    expect(await resumes()).toBe(before + 1);
  });

  it('ollama-js: the streamed chat adds up to the uninterrupted text', async () => {
    const ask = {
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'Tell me about rivers' }],
      options: { seed: 5 },
      stream: true as const,
    };
    const collect = async (client: Ollama) => {
      let text = '';
      let evalCount = 0;
      for await (const p of await client.chat(ask)) {
        text += p.message.content;
        if (p.done) evalCount = p.eval_count;
      }
      return { text, evalCount };
    };
    const whole = await collect(new Ollama({ host: c.url }));
    const cut = await collect(new Ollama({ host: c.url, fetch: cuttingFetch }));
    expect(cut).toEqual(whole);
    expect(await resumes()).toBe(before + 1);
  });
});
