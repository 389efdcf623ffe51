import Anthropic from '@anthropic-ai/sdk';
import { ChatOllama } from '@langchain/ollama';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { createOllama } from 'ollama-ai-provider-v2';
import { startSimServer, type SimServer } from '@app/ollama-sim';

/** The client libraries people use against today's Ollama, pointed straight at the simulator. */

const WEATHER = {
  type: 'object',
  properties: {
    city: { type: 'string' },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
    days: { type: 'integer', minimum: 1, maximum: 7 },
  },
  required: ['city', 'unit'],
} as const;
const OLLAMA_TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather for a city', parameters: WEATHER } },
];

function expectWeatherArgs(args: any): void {
  expect(typeof args.city).toBe('string');
  expect(['celsius', 'fahrenheit']).toContain(args.unit);
  if ('days' in args) {
    expect(Number.isInteger(args.days)).toBe(true);
    expect(args.days).toBeGreaterThanOrEqual(1);
    expect(args.days).toBeLessThanOrEqual(7);
  }
}

describe('ollama-sim with the SDKs of today’s Ollama users', () => {
  let sim: SimServer;
  beforeAll(async () => {
    sim = await startSimServer({
      loadMsPerGB: 0,
      tokensPerSecond: 1000,
      numParallel: 4,
      thinkingTokens: 5,
      defaultOutputTokens: 10,
      models: [
        { name: 'llama3.2:latest', sizeBytes: 2_019_393_189 },
        { name: 'qwen3:0.6b', sizeBytes: 522_653_767 },
      ],
    });
  });
  afterAll(() => sim.close());

  describe('ollama-js', () => {
    const client = () => new Ollama({ host: sim.url });

    it('think: streams thinking before content, and returns both whole', async () => {
      const messages = [{ role: 'user', content: 'Why is the sky blue?' }];
      const parts: { thinking?: string; content: string }[] = [];
      for await (const p of await client().chat({ model: 'qwen3:0.6b', messages, think: true, stream: true }))
        parts.push(p.message);
      const thinking = parts.filter((p) => p.thinking).map((p) => p.thinking);
      expect(thinking).toHaveLength(5);
      expect(parts.findIndex((p) => p.content)).toBe(5);
      const whole = await client().chat({ model: 'qwen3:0.6b', messages, think: true });
      expect(whole.message.thinking).toBe(thinking.join(''));
      expect(whole.message.content).toBe(parts.map((p) => p.content).join(''));
      await expect(client().chat({ model: 'llama3.2', messages, think: true })).rejects.toMatchObject({
        status_code: 400,
        error: '"llama3.2" does not support thinking',
      });
    });

    it('tools: a tool call with schema-shaped arguments, then an answer from the tool result', async () => {
      const messages: any[] = [{ role: 'user', content: 'Call get_weather for Paris' }];
      const first = await client().chat({ model: 'llama3.2', messages, tools: OLLAMA_TOOLS as any });
      expect(first.message.tool_calls).toHaveLength(1);
      const call = first.message.tool_calls![0];
      expect(call.function.name).toBe('get_weather');
      expectWeatherArgs(call.function.arguments);
      messages.push(first.message, { role: 'tool', content: '18 degrees and rain', tool_name: 'get_weather' });
      const second = await client().chat({ model: 'llama3.2', messages, tools: OLLAMA_TOOLS as any });
      expect(second.message.tool_calls ?? []).toHaveLength(0);
      expect(second.message.content.startsWith('18 degrees and rain ')).toBe(true);
    });

    it('format: a JSON schema gives JSON that matches it', async () => {
      const schema = {
        type: 'object',
        properties: {
          name: { type: 'string' },
          age: { type: 'integer', minimum: 0, maximum: 120 },
          pets: { type: 'array', items: { type: 'string' } },
        },
        required: ['name', 'age', 'pets'],
      };
      const r = await client().chat({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'Describe a person' }],
        format: schema,
      });
      const v = JSON.parse(r.message.content);
      expect(typeof v.name).toBe('string');
      expect(Number.isInteger(v.age) && v.age >= 0 && v.age <= 120).toBe(true);
      expect(Array.isArray(v.pets) && v.pets.every((p: unknown) => typeof p === 'string')).toBe(true);
      const g = await client().generate({ model: 'llama3.2', prompt: 'json', format: 'json' });
      expect(typeof JSON.parse(g.response ?? '')).toBe('object');
    });
  });

  describe('openai', () => {
    const client = () => new OpenAI({ baseURL: sim.url + '/v1', apiKey: 'x', maxRetries: 0 });
    const tools: OpenAI.Chat.ChatCompletionTool[] = [
      { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: WEATHER as any } },
    ];

    it('tools streamed (deltas by index) with stream_options.include_usage, and whole', async () => {
      const stream = await client().chat.completions.create({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'get_weather for Lima' }],
        tools,
        stream: true,
        stream_options: { include_usage: true },
      });
      const calls: { id?: string; name: string; args: string }[] = [];
      let finish: string | null = null;
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of stream) {
        for (const tc of chunk.choices[0]?.delta?.tool_calls ?? []) {
          calls[tc.index] ??= { name: '', args: '' };
          calls[tc.index].id ??= tc.id;
          calls[tc.index].name += tc.function?.name ?? '';
          calls[tc.index].args += tc.function?.arguments ?? '';
        }
        finish = chunk.choices[0]?.finish_reason ?? finish;
        if (chunk.usage) usage = chunk.usage;
      }
      expect(calls).toHaveLength(1);
      expect(calls[0].id).toMatch(/^call_/);
      expect(calls[0].name).toBe('get_weather');
      expectWeatherArgs(JSON.parse(calls[0].args));
      expect(finish).toBe('tool_calls');
      expect(usage?.completion_tokens).toBeGreaterThan(0);
      const whole = await client().chat.completions.create({
        model: 'llama3.2',
        tools,
        messages: [
          { role: 'user', content: 'get_weather for Lima' },
          {
            role: 'assistant',
            content: '',
            tool_calls: [
              { id: calls[0].id!, type: 'function', function: { name: 'get_weather', arguments: calls[0].args } },
            ],
          },
          { role: 'tool', tool_call_id: calls[0].id!, content: 'Cloudy' },
        ],
      });
      expect(whole.choices[0].message.content!.startsWith('Cloudy ')).toBe(true);
      expect(whole.choices[0].finish_reason).toBe('stop');
    });

    it('reasoning_effort streams `reasoning` deltas before the content', async () => {
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
      expect(kinds.join('')).toBe('rrr' + 'c'.repeat(10)); // low = half of thinkingTokens, rounded (5 -> 3)
    });

    it('responses.create, whole and streamed', async () => {
      const r = await client().responses.create({
        model: 'llama3.2',
        input: 'Tell me a fact',
        instructions: 'Be brief',
      });
      expect(r.status).toBe('completed');
      expect(r.output_text.split(' ').length).toBe(10);
      expect(r.usage?.output_tokens).toBe(10);
      const events: string[] = [];
      let text = '';
      let completed: any;
      for await (const e of await client().responses.create({
        model: 'llama3.2',
        input: 'Tell me a fact',
        instructions: 'Be brief',
        stream: true,
      })) {
        events.push(e.type);
        if (e.type === 'response.output_text.delta') text += e.delta;
        if (e.type === 'response.completed') completed = e.response;
      }
      expect(events[0]).toBe('response.created');
      expect(events[events.length - 1]).toBe('response.completed');
      expect(text).toBe(r.output_text);
      expect(completed.output_text ?? completed.output[0].content[0].text).toBe(text);
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

  describe('@anthropic-ai/sdk', () => {
    const client = () => new Anthropic({ baseURL: sim.url, apiKey: 'x', maxRetries: 0 });

    it('messages.create: text, usage, stop_reason; thinking blocks on a thinking model', async () => {
      const m = await client().messages.create({
        model: 'llama3.2',
        max_tokens: 100,
        system: 'Be brief',
        messages: [{ role: 'user', content: 'Hello' }],
      });
      expect(m.type).toBe('message');
      expect(m.content.map((b) => b.type)).toEqual(['text']);
      expect((m.content[0] as Anthropic.TextBlock).text.split(' ')).toHaveLength(10);
      expect(m.stop_reason).toBe('end_turn');
      expect(m.usage.output_tokens).toBe(10);
      const short = await client().messages.create({
        model: 'llama3.2',
        max_tokens: 4,
        messages: [{ role: 'user', content: 'Hello' }],
      });
      expect([short.stop_reason, short.usage.output_tokens]).toEqual(['max_tokens', 4]);
      const t = await client().messages.create({
        model: 'qwen3:0.6b',
        max_tokens: 100,
        thinking: { type: 'enabled', budget_tokens: 1024 },
        messages: [{ role: 'user', content: 'Hello' }],
      });
      expect(t.content.map((b) => b.type)).toEqual(['thinking', 'text']);
      expect((t.content[0] as Anthropic.ThinkingBlock).thinking.split(' ')).toHaveLength(5);
    });

    it('messages.stream: text events add up to the final message, usage from message_delta', async () => {
      const stream = client().messages.stream({
        model: 'qwen3:0.6b',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'Stream please' }],
      });
      let text = '';
      let thinking = '';
      stream.on('text', (d) => (text += d));
      stream.on('thinking', (d) => (thinking += d));
      const final = await stream.finalMessage();
      expect(final.content.map((b) => b.type)).toEqual(['thinking', 'text']);
      expect((final.content[1] as Anthropic.TextBlock).text).toBe(text);
      expect((final.content[0] as Anthropic.ThinkingBlock).thinking).toBe(thinking);
      expect(final.usage.output_tokens).toBe(15);
      expect(final.stop_reason).toBe('end_turn');
    });

    it('tools: tool_use blocks (whole and streamed), then a tool_result turn', async () => {
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
      const su = streamed.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock;
      expect(su.name).toBe('get_weather');
      expectWeatherArgs(su.input);
      expect(streamed.stop_reason).toBe('tool_use');
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
      expect(next.stop_reason).toBe('end_turn');
      expect((next.content[0] as Anthropic.TextBlock).text.startsWith('Snow, -3 ')).toBe(true);
    });

    it('errors surface as the SDK’s typed errors', async () => {
      await expect(
        client().messages.create({ model: 'ghost', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
      ).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    });
  });

  describe('LangChain ChatOllama', () => {
    it('bindTools: the model’s tool_calls carry the tool’s name and schema-shaped args', async () => {
      const llm = new ChatOllama({ baseUrl: sim.url, model: 'llama3.2' }).bindTools([
        { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: WEATHER as any } },
      ]);
      const msg = await llm.invoke('Use get_weather for Madrid');
      expect(msg.tool_calls).toHaveLength(1);
      expect(msg.tool_calls![0].name).toBe('get_weather');
      expectWeatherArgs(msg.tool_calls![0].args);
      const plain = await llm.invoke('Just say hello');
      expect(plain.tool_calls ?? []).toHaveLength(0);
      expect(String(plain.content).split(' ')).toHaveLength(10);
    });
  });

  describe('AI SDK 5', () => {
    const weather = tool({
      description: 'Weather for a city',
      inputSchema: jsonSchema<{ city: string; unit: string; days?: number }>(WEATHER as any),
      execute: async ({ city }) => `Sunny in ${city}`,
    });

    it('ollama-ai-provider-v2: a tool call, its execution, and the answer that uses it', async () => {
      const ollama = createOllama({ baseURL: sim.url + '/api' });
      const r = await generateText({
        model: ollama('llama3.2'),
        prompt: 'What does get_weather say for Berlin?',
        tools: { get_weather: weather },
        stopWhen: stepCountIs(2),
      });
      expect(r.steps).toHaveLength(2);
      const call = r.steps[0].toolCalls[0];
      expect(call.toolName).toBe('get_weather');
      expectWeatherArgs(call.input);
      // Ollama's done_reason stays "stop" with tool calls; the provider passes that on, and the SDK still runs the tool.
      expect(r.steps[1].toolResults).toHaveLength(0);
      expect(r.steps[0].toolResults[0].output).toBe(`Sunny in ${(call.input as any).city}`);
      expect(r.text.startsWith(`Sunny in ${(call.input as any).city} `)).toBe(true);
    });

    it('@ai-sdk/openai-compatible: streamed tool call against /v1', async () => {
      const provider = createOpenAICompatible({ name: 'ollama', baseURL: sim.url + '/v1' });
      const r = streamText({
        model: provider.chatModel('llama3.2'),
        prompt: 'get_weather for Quito',
        tools: { get_weather: tool({ description: 'Weather', inputSchema: jsonSchema(WEATHER as any) }) },
      });
      const calls = await r.toolCalls;
      expect(calls).toHaveLength(1);
      expect(calls[0].toolName).toBe('get_weather');
      expectWeatherArgs(calls[0].input);
      expect(await r.finishReason).toBe('tool-calls');
    });
  });
});
