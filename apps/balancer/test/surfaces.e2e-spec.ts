import { Cluster, request, startCluster } from './harness';

/**
 * Today's Ollama surfaces through the balancer: /v1/messages and /v1/responses routed by model,
 * errors in each surface's shape, backends that predate a route, and capability-aware candidates.
 */

const MODEL = { name: 'llama3.2:latest', sizeBytes: 2e9 };
const FAST = { loadMsPerGB: 0, tokensPerSecond: 1000, defaultOutputTokens: 6, numParallel: 4 };

const messagesBody = (extra: Record<string, unknown> = {}) => ({
  model: 'llama3.2',
  max_tokens: 64,
  messages: [{ role: 'user', content: 'Say hello' }],
  ...extra,
});

async function status(url: string): Promise<any> {
  return (await request(`${url}/balancer/status`)).body;
}

function backendOf(st: any, name: string): any {
  return st.backends.find((b: any) => b.name === name);
}

describe('surfaces: mixed Ollama versions', () => {
  let c: Cluster;
  beforeAll(async () => {
    // b1: today's Ollama with /v1/messages off (a build without it); b2: today's; b3: 0.12.3 (no /v1/messages, /v1/responses, /api/status).
    // Round robin: every backend gets its turn, so a backend left out is left out by the filter.
    c = await startCluster(
      [
        { ...FAST, models: [MODEL], routes: { messages: false } },
        { ...FAST, models: [MODEL] },
        { ...FAST, models: [MODEL], version: '0.12.3' },
      ],
      { ROUTING_POLICY: 'round-robin' },
    );
  });
  afterAll(() => c.close());

  it('sends /v1/messages only to backends that have it; a 404 page not found costs the backend nothing', async () => {
    const served = new Set<string>();
    let retried = 0;
    for (let i = 0; i < 12; i++) {
      const r = await request(`${c.url}/v1/messages`, { body: messagesBody() });
      if (r.headers['x-balancer-attempts'] !== undefined) retried++;
      expect(r.status).toBe(200);
      expect(r.body.type).toBe('message');
      expect(r.body.content[0].type).toBe('text');
      expect(r.body.content[0].text.length).toBeGreaterThan(0);
      served.add(String(r.headers['x-balancer-backend']));
    }
    expect([...served]).toEqual(['b2']);
    // b1 was asked at most once (then known to lack the route); b3's version predates it: never asked.
    expect(retried).toBeLessThanOrEqual(1);
    const st = await status(c.url);
    expect(backendOf(st, 'b1').missingRoutes).toEqual(retried === 1 ? ['/v1/messages'] : []);
    expect(backendOf(st, 'b3').missingRoutes).toEqual([]);
    for (const name of ['b1', 'b2', 'b3']) {
      const b = backendOf(st, name);
      expect(b.health).toBe('healthy');
      expect(b.ejected).toBe(false);
    }
    // The model is still everywhere: in each inventory, and plain chats reach all three.
    for (const name of ['b1', 'b2', 'b3']) expect(backendOf(st, name).models).toContain('llama3.2:latest');
    const chatServed = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await request(`${c.url}/api/chat`, {
        body: { model: 'llama3.2', stream: false, messages: [{ role: 'user', content: `hi ${i}` }] },
      });
      expect(r.status).toBe(200);
      chatServed.add(String(r.headers['x-balancer-backend']));
    }
    expect([...chatServed].sort()).toEqual(['b1', 'b2', 'b3']);
  });

  it('routes /v1/responses by model to the backends that have it', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await request(`${c.url}/v1/responses`, { body: { model: 'llama3.2', input: 'Say hello' } });
      expect(r.status).toBe(200);
      expect(r.body.object).toBe('response');
      expect(r.body.status).toBe('completed');
      expect(['b1', 'b2']).toContain(r.headers['x-balancer-backend']);
      expect(r.headers['x-balancer-attempts']).toBeUndefined();
      expect(r.body.usage.output_tokens).toBeGreaterThan(0);
    }
  });

  it('answers /api/status for the fleet from the backends that have it', async () => {
    const r = await request(`${c.url}/api/status`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ cloud: { disabled: false, source: 'none' } });
    expect(backendOf(await status(c.url), 'b3').missingRoutes).toEqual([]);
  });

  it("answers errors on /v1/messages in Anthropic's shape", async () => {
    const missing = await request(`${c.url}/v1/messages`, { body: messagesBody({ model: 'nope' }) });
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({
      type: 'error',
      error: { type: 'not_found_error', message: "model 'nope' not found" },
      request_id: expect.stringMatching(/^req_[0-9a-f]{24}$/),
    });
    const bad = await request(`${c.url}/v1/messages`, { body: '{"model":' });
    expect(bad.status).toBe(400);
    expect(bad.body.type).toBe('error');
    expect(bad.body.error.type).toBe('invalid_request_error');
    expect(bad.body.error.message).toMatch(/^invalid JSON in request body/);
    const noModel = await request(`${c.url}/v1/responses`, { body: { input: 'x' } });
    expect(noModel.status).toBe(400);
    expect(noModel.body).toEqual({
      error: { message: 'model is required', type: 'invalid_request_error', param: null, code: null },
    });
  });
});

describe('surfaces: a fleet where no backend has /v1/messages', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster([
      { ...FAST, models: [MODEL], routes: { messages: false, status: false } },
      { ...FAST, models: [MODEL], routes: { messages: false, status: false } },
    ]);
  });
  afterAll(() => c.close());

  it("answers 404 in Anthropic's shape, and no model disappears", async () => {
    for (let i = 0; i < 3; i++) {
      const r = await request(`${c.url}/v1/messages`, { body: messagesBody() });
      expect(r.status).toBe(404);
      expect(r.body).toEqual({
        type: 'error',
        error: { type: 'not_found_error', message: '404 page not found' },
        request_id: expect.stringMatching(/^req_[0-9a-f]{24}$/),
      });
    }
    const st = await status(c.url);
    for (const b of st.backends) {
      expect(b.health).toBe('healthy');
      expect(b.ejected).toBe(false);
      expect(b.missingRoutes).toEqual(['/v1/messages']);
      expect(b.models).toContain('llama3.2:latest');
    }
    const tags = await request(`${c.url}/api/tags`);
    expect(tags.body.models.map((m: any) => m.name)).toContain('llama3.2:latest');
    const chat = await request(`${c.url}/api/chat`, {
      body: { model: 'llama3.2', stream: false, messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(chat.status).toBe(200);
  });

  it('answers /api/status 404 page not found, as each of its servers would', async () => {
    const r = await request(`${c.url}/api/status`);
    expect(r.status).toBe(404);
    expect(r.text).toBe('404 page not found');
    const st = await status(c.url);
    for (const b of st.backends) expect(b.missingRoutes).toEqual(['/api/status', '/v1/messages']);
  });
});

describe('surfaces: capability-aware candidates', () => {
  let c: Cluster;
  beforeAll(async () => {
    // The same name, different builds: only b2's has tools; nobody's thinks or sees.
    c = await startCluster([
      { ...FAST, models: [{ name: 'mixed:latest', sizeBytes: 1e9, capabilities: ['completion'] }] },
      { ...FAST, models: [{ name: 'mixed:latest', sizeBytes: 1e9, capabilities: ['completion', 'tools'] }] },
    ]);
  });
  afterAll(() => c.close());

  const tools = [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Weather',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    },
  ];

  it('sends a request with tools only where the model has tools, on every surface', async () => {
    for (let i = 0; i < 6; i++) {
      const chat = await request(`${c.url}/api/chat`, {
        body: {
          model: 'mixed',
          stream: false,
          tools,
          messages: [{ role: 'user', content: 'call get_weather please' }],
        },
      });
      expect(chat.status).toBe(200);
      expect(chat.headers['x-balancer-backend']).toBe('b2');
      expect(chat.body.message.tool_calls[0].function.name).toBe('get_weather');
      const oai = await request(`${c.url}/v1/chat/completions`, {
        body: { model: 'mixed', tools, messages: [{ role: 'user', content: 'get_weather for Paris' }] },
      });
      expect(oai.status).toBe(200);
      expect(oai.headers['x-balancer-backend']).toBe('b2');
      expect(oai.body.choices[0].message.tool_calls[0].function.name).toBe('get_weather');
      const anth = await request(`${c.url}/v1/messages`, {
        body: messagesBody({
          model: 'mixed',
          tools: [{ name: 'get_weather', description: 'Weather', input_schema: tools[0].function.parameters }],
          messages: [{ role: 'user', content: 'get_weather in Oslo' }],
        }),
      });
      expect(anth.status).toBe(200);
      expect(anth.headers['x-balancer-backend']).toBe('b2');
      expect(anth.body.content.find((b: any) => b.type === 'tool_use').name).toBe('get_weather');
    }
    expect(c.sims[0].stats().errorsByStatus?.['400'] ?? 0).toBe(0);
  });

  it("answers 400 with Ollama's own message, in each surface's shape, when no backend's model can", async () => {
    const think = await request(`${c.url}/api/chat`, {
      body: { model: 'mixed', think: true, messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(think.status).toBe(400);
    expect(think.body).toEqual({ error: '"mixed" does not support thinking' });
    const effort = await request(`${c.url}/v1/chat/completions`, {
      body: { model: 'mixed', reasoning_effort: 'high', messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(effort.status).toBe(400);
    expect(effort.body.error).toEqual({
      message: '"mixed" does not support thinking',
      type: 'invalid_request_error',
      param: null,
      code: null,
    });
    const image = await request(`${c.url}/api/generate`, {
      body: { model: 'mixed', prompt: 'what is this', images: ['aGVsbG8='] },
    });
    expect(image.status).toBe(400);
    expect(image.body).toEqual({ error: 'registry.ollama.ai/library/mixed:latest does not support vision' });
    const anthImage = await request(`${c.url}/v1/messages`, {
      body: messagesBody({
        model: 'mixed',
        messages: [
          {
            role: 'user',
            content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'aGVsbG8=' } }],
          },
        ],
      }),
    });
    expect(anthImage.status).toBe(400);
    expect(anthImage.body).toEqual({
      type: 'error',
      error: {
        type: 'invalid_request_error',
        message: 'registry.ollama.ai/library/mixed:latest does not support vision',
      },
      request_id: expect.stringMatching(/^req_[0-9a-f]{24}$/),
    });
    // Thinking on /v1/messages is relaxed by Ollama (dropped on a model without it): not refused.
    const relaxed = await request(`${c.url}/v1/messages`, {
      body: messagesBody({ model: 'mixed', thinking: { type: 'enabled', budget_tokens: 1024 } }),
    });
    expect(relaxed.status).toBe(200);
    // Nothing of these reached a backend that would have refused it.
    for (const s of c.sims) expect(s.stats().errorsByStatus?.['400'] ?? 0).toBe(0);
  });
});
