import * as http from 'http';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { startSimServer, type SimServer } from '@app/ollama-sim';

/** The real client libraries, pointed straight at the simulator. */
describe('ollama-sim with real clients', () => {
  let sim: SimServer;
  beforeAll(async () => {
    sim = await startSimServer({
      loadMsPerGB: 0,
      tokensPerSecond: 500,
      numParallel: 4,
      embeddingDims: 32,
      pullMs: 50,
      models: [
        { name: 'llama3.2:latest', sizeBytes: 2_019_393_189 },
        { name: 'nomic-embed-text:latest', sizeBytes: 274_302_450, embedding: true },
      ],
    });
  });
  afterAll(() => sim.close());

  describe('ollama-js', () => {
    const client = () => new Ollama({ host: sim.url });

    it('chat, streamed and not, give the same deterministic text', async () => {
      const messages = [{ role: 'user', content: 'Hello there' }];
      const stream = await client().chat({ model: 'llama3.2', messages, stream: true, options: { num_predict: 8 } });
      const parts: string[] = [];
      let last: any;
      for await (const part of stream) {
        parts.push(part.message.content);
        last = part;
      }
      expect(parts).toHaveLength(9);
      expect(last).toMatchObject({ done: true, done_reason: 'length', eval_count: 8 });
      const whole = await client().chat({ model: 'llama3.2', messages, options: { num_predict: 8 } });
      expect(whole.message.content).toBe(parts.join(''));
      expect(whole.done).toBe(true);
    });

    it('generate, list, ps, show, embed', async () => {
      const g = await client().generate({ model: 'llama3.2', prompt: 'Why?', options: { num_predict: 4 } });
      expect(g.done).toBe(true);
      expect((g.response ?? '').split(' ').length).toBeGreaterThanOrEqual(4);
      expect(Array.isArray(g.context)).toBe(true);
      const list = await client().list();
      expect(list.models.map((m) => m.name)).toContain('llama3.2:latest');
      const ps = await client().ps();
      expect(ps.models.map((m) => m.name)).toContain('llama3.2:latest');
      const show = await client().show({ model: 'llama3.2' });
      expect(show.details.format).toBe('gguf');
      const e = await client().embed({ model: 'nomic-embed-text', input: ['one', 'two'] });
      expect(e.embeddings).toHaveLength(2);
      expect(e.embeddings[0]).toHaveLength(32);
      const v = await client().version();
      expect(v.version).toMatch(/^\d+\.\d+\.\d+$/);
    });

    it('pull streams to success and the model is listed; errors surface as ResponseError', async () => {
      const statuses: string[] = [];
      for await (const p of await client().pull({ model: 'gemma3:1b', stream: true })) statuses.push(p.status);
      expect(statuses[0]).toBe('pulling manifest');
      expect(statuses[statuses.length - 1]).toBe('success');
      expect((await client().list()).models.map((m) => m.name)).toContain('gemma3:1b');
      await expect(
        client()
          .pull({ model: 'nonexistent-thing', stream: true })
          .then(async (it) => {
            for await (const _ of it) void _;
          }),
      ).rejects.toThrow('pull model manifest: file does not exist');
      await expect(client().chat({ model: 'ghost', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject(
        {
          name: 'ResponseError',
          status_code: 404,
          error: 'model "ghost" not found, try pulling it first',
        },
      );
      await expect(client().delete({ model: 'ghost' })).rejects.toMatchObject({
        status_code: 404,
        error: "model 'ghost' not found",
      });
    });
  });

  describe('openai', () => {
    const client = () => new OpenAI({ baseURL: sim.url + '/v1', apiKey: 'x', maxRetries: 0 });

    it('streams chat completions with usage', async () => {
      const stream = await client().chat.completions.create({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'Hello there' }],
        stream: true,
        max_tokens: 6,
        stream_options: { include_usage: true },
      });
      let text = '';
      let finish: string | null = null;
      let usage: any;
      for await (const chunk of stream) {
        if (chunk.choices[0]) {
          text += chunk.choices[0].delta.content ?? '';
          finish = chunk.choices[0].finish_reason ?? finish;
        }
        if (chunk.usage) usage = chunk.usage;
      }
      expect(finish).toBe('length');
      expect(usage).toMatchObject({ completion_tokens: 6 });
      const plain = await client().chat.completions.create({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'Hello there' }],
        max_tokens: 6,
      });
      expect(plain.choices[0].message.content).toBe(text);
    });

    it('lists models, retrieves one, creates embeddings (base64 default and float)', async () => {
      const ids: string[] = [];
      for await (const m of client().models.list()) ids.push(m.id);
      expect(ids).toContain('llama3.2:latest');
      expect((await client().models.retrieve('llama3.2:latest')).owned_by).toBe('library');
      const b64 = await client().embeddings.create({ model: 'nomic-embed-text', input: ['alpha', 'beta'] });
      expect(b64.data).toHaveLength(2);
      expect(b64.data[0].embedding).toHaveLength(32);
      const floats = await client().embeddings.create({
        model: 'nomic-embed-text',
        input: 'alpha',
        encoding_format: 'float',
      });
      floats.data[0].embedding.forEach((x, i) => expect(x).toBeCloseTo(b64.data[0].embedding[i], 5));
      await expect(
        client().chat.completions.create({ model: 'ghost', messages: [{ role: 'user', content: 'x' }] }),
      ).rejects.toMatchObject({
        status: 404,
      });
    });
  });

  it('holds 2,000 concurrent streams to completion', async () => {
    const big = await startSimServer({
      loadMsPerGB: 0,
      tokensPerSecond: 100,
      numParallel: 2000,
      maxQueue: 4000,
      loaded: ['llama3.2'],
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
    try {
      const body = JSON.stringify({ model: 'llama3.2', prompt: 'go', options: { num_predict: 10 } });
      const one = (): Promise<number> =>
        new Promise((resolve, reject) => {
          const req = http.request(
            big.url + '/api/generate',
            { method: 'POST', agent, headers: { 'Content-Length': Buffer.byteLength(body) } },
            (res) => {
              let lines = 0;
              let last = '';
              res.setEncoding('utf8');
              res.on('data', (c: string) => {
                for (let i = c.indexOf('\n'); i !== -1; i = c.indexOf('\n', i + 1)) lines++;
                last = c;
              });
              res.on('end', () => (last.includes('"done":true') ? resolve(lines) : reject(new Error('no done line'))));
              res.on('error', reject);
            },
          );
          req.on('error', reject);
          req.end(body);
        });
      const counts = await Promise.all(Array.from({ length: 2000 }, one));
      expect(counts.every((n) => n === 11)).toBe(true);
      const st = big.stats();
      expect(st).toMatchObject({ active: 0, queued: 0, tokens: 20_000 });
      expect(st.byRoute['POST /api/generate']).toBe(2000);
    } finally {
      agent.destroy();
      await big.close();
    }
  }, 120_000);
});
