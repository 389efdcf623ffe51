import { mkdtempSync, readFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { createHash } from 'crypto';
import * as http from 'http';
import { startSimServer, type SimConfig, type SimServer } from '@app/ollama-sim';
import { probe, request, sleep, waitFor } from './helpers';

const BUSY = '{"error":"server busy, please try again.  maximum pending requests exceeded"}';
const SMALL: SimConfig['models'] = [
  { name: 'llama3.2:latest', sizeBytes: 2_000_000_000 },
  { name: 'qwen2.5:7b', sizeBytes: 4_700_000_000 },
  { name: 'mistral:7b', sizeBytes: 4_100_000_000 },
  { name: 'nomic-embed-text', sizeBytes: 274_000_000, embedding: true },
];

describe('ollama-sim (real sockets)', () => {
  const servers: SimServer[] = [];
  async function sim(cfg: SimConfig = {}): Promise<SimServer> {
    const s = await startSimServer({ models: SMALL, loadMsPerGB: 0, tokensPerSecond: 200, ...cfg });
    servers.push(s);
    return s;
  }
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  describe('probes and listings', () => {
    it('answers the cheap probes and an unknown route like Go mux does', async () => {
      const s = await sim({ version: '0.12.3' });
      const root = await request(s.url + '/');
      expect(root.status).toBe(200);
      expect(root.body).toBe('Ollama is running');
      expect(root.headers['content-type']).toMatch(/^text\/plain/);
      const head = await request(s.url + '/', { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.body).toBe('');
      expect(JSON.parse((await request(s.url + '/api/version')).body)).toEqual({ version: '0.12.3' });
      const nf = await request(s.url + '/api/nothing');
      expect(nf.status).toBe(404);
      expect(nf.body).toBe('404 page not found');
      expect(nf.headers['content-type']).toBe('text/plain');
      // A route Ollama has, with another method: Gin's 405 (Ollama's router sets HandleMethodNotAllowed).
      for (const [method, path] of [
        ['GET', '/api/chat'],
        ['POST', '/api/tags'],
        ['POST', '/api/ps'],
        ['PUT', '/'],
        ['DELETE', '/v1/models/llama3.2'],
        ['GET', '/api/blobs/sha256:00'],
      ] as const) {
        const r = await request(s.url + path, { method });
        expect([method, path, r.status, r.body, r.headers['content-type']]).toEqual([
          method,
          path,
          405,
          '405 method not allowed',
          'text/plain',
        ]);
      }
    });

    it('lists models on disk with normalised names and details', async () => {
      const s = await sim();
      const tags = JSON.parse((await request(s.url + '/api/tags')).body);
      const names = tags.models.map((m: any) => m.name).sort();
      expect(names).toEqual(['llama3.2:latest', 'mistral:7b', 'nomic-embed-text:latest', 'qwen2.5:7b']);
      const m = tags.models.find((x: any) => x.name === 'qwen2.5:7b');
      expect(m).toMatchObject({ model: 'qwen2.5:7b', size: 4_700_000_000, details: { format: 'gguf' } });
      expect(m.digest).toMatch(/^[0-9a-f]{64}$/);
      expect(JSON.parse((await request(s.url + '/api/ps')).body)).toEqual({ models: [] });
      const show = await request(s.url + '/api/show', { body: { model: 'llama3.2' } });
      expect(show.status).toBe(200);
      expect(JSON.parse(show.body).capabilities).toEqual(['completion', 'tools']); // as Ollama reports llama3.2
      const showMissing = await request(s.url + '/api/show', { body: { name: 'ghost' } });
      expect(showMissing.status).toBe(404);
      expect(showMissing.body).toBe(`{"error":"model 'ghost' not found"}`);
    });
  });

  describe('generation', () => {
    it('streams chat one token per NDJSON line, spread over time, ending with metrics', async () => {
      const s = await sim({ tokensPerSecond: 20 }); // 50 ms a token
      const r = await request(s.url + '/api/chat', {
        body: {
          model: 'llama3.2',
          messages: [{ role: 'user', content: 'Tell me a story' }],
          options: { num_predict: 10 },
        },
      });
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('application/x-ndjson');
      expect(r.headers['transfer-encoding']).toBe('chunked');
      expect(r.lines).toHaveLength(11);
      const objs = r.lines.map((l) => JSON.parse(l.line));
      for (const o of objs.slice(0, 10)) {
        expect(o).toMatchObject({ model: 'llama3.2', done: false, message: { role: 'assistant' } });
        expect(typeof o.message.content).toBe('string');
        expect(o.created_at).toMatch(/^\d{4}-\d\d-\d\dT/);
      }
      const last = objs[10];
      expect(last).toMatchObject({
        done: true,
        done_reason: 'length',
        eval_count: 10,
        message: { role: 'assistant', content: '' },
      });
      for (const k of [
        'total_duration',
        'load_duration',
        'prompt_eval_count',
        'prompt_eval_duration',
        'eval_duration',
      ]) {
        expect(last[k]).toBeGreaterThan(0);
      }
      expect(last.eval_duration).toBeGreaterThan(300e6); // 9 gaps of 50 ms
      // Spread over time, not one burst: 9 gaps of 50 ms ≈ 450 ms; a burst would be ~0.
      expect(r.lines[9].at - r.lines[0].at).toBeGreaterThanOrEqual(250);
      const gaps = r.lines.slice(1, 10).map((l, i) => l.at - r.lines[i].at);
      expect(gaps.filter((g) => g >= 20).length).toBeGreaterThanOrEqual(6);
    });

    it('answers stream:false with one complete object, same text as the stream (deterministic)', async () => {
      const s = await sim();
      const body = { model: 'llama3.2:latest', prompt: 'Why is the sky blue?', options: { num_predict: 12 } };
      const streamed = await request(s.url + '/api/generate', { body });
      const text = streamed.lines.map((l) => JSON.parse(l.line).response).join('');
      const whole = await request(s.url + '/api/generate', { body: { ...body, stream: false } });
      expect(whole.status).toBe(200);
      expect(whole.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(Number(whole.headers['content-length'])).toBe(Buffer.byteLength(whole.body));
      const o = JSON.parse(whole.body);
      expect(o.response).toBe(text);
      expect(o).toMatchObject({ model: 'llama3.2:latest', done: true, done_reason: 'length', eval_count: 12 });
      expect(o.prompt_eval_count).toBe(Math.ceil(body.prompt.length / 4));
      expect(Array.isArray(o.context) && o.context.every((n: unknown) => Number.isInteger(n))).toBe(true);
      const again = JSON.parse((await request(s.url + '/api/generate', { body: { ...body, stream: false } })).body);
      expect(again.response).toBe(o.response);
      const other = JSON.parse(
        (await request(s.url + '/api/generate', { body: { ...body, prompt: 'Something else', stream: false } })).body,
      );
      expect(other.response).not.toBe(o.response);
      // Without num_predict: the configured default length and done_reason stop.
      const dflt = JSON.parse(
        (await request(s.url + '/api/generate', { body: { model: 'llama3.2', prompt: 'x', stream: false } })).body,
      );
      expect(dflt).toMatchObject({ done_reason: 'stop', eval_count: 32 });
    });

    it('refuses generate on an embedding model and serves /api/embed and /api/embeddings', async () => {
      const s = await sim({ embeddingDims: 16 });
      const g = await request(s.url + '/api/generate', { body: { model: 'nomic-embed-text', prompt: 'hi' } });
      expect(g.status).toBe(400);
      expect(JSON.parse(g.body).error).toBe('"nomic-embed-text" does not support generate');
      const e = await request(s.url + '/api/embed', { body: { model: 'nomic-embed-text', input: ['a', 'bb'] } });
      expect(e.status).toBe(200);
      const o = JSON.parse(e.body);
      expect(o.model).toBe('nomic-embed-text');
      expect(o.embeddings).toHaveLength(2);
      expect(o.embeddings[0]).toHaveLength(16);
      expect(o.total_duration).toBeGreaterThan(0);
      expect(o.prompt_eval_count).toBe(2);
      const legacy = JSON.parse(
        (await request(s.url + '/api/embeddings', { body: { model: 'nomic-embed-text', prompt: 'a' } })).body,
      );
      expect(legacy.embedding).toEqual(o.embeddings[0]);
    });
  });

  describe('errors', () => {
    it('answers 400 and 404 with Ollama messages', async () => {
      const s = await sim();
      const cases: [string, unknown, number, string][] = [
        ['/api/generate', { prompt: 'x' }, 400, '{"error":"model is required"}'],
        [
          '/api/chat',
          { model: 'ghost', messages: [{ role: 'user', content: 'x' }] },
          404,
          '{"error":"model \\"ghost\\" not found, try pulling it first"}',
        ],
        ['/api/embed', { model: 'ghost', input: 'x' }, 404, `{"error":"model 'ghost' not found"}`],
        ['/api/delete', { model: 'ghost' }, 404, `{"error":"model 'ghost' not found"}`],
      ];
      for (const [path, body, status, text] of cases) {
        const r = await request(s.url + path, { body, method: path === '/api/delete' ? 'DELETE' : 'POST' });
        expect([path, r.status, r.body]).toEqual([path, status, text]);
        expect(r.headers['content-type']).toBe('application/json; charset=utf-8');
      }
      const empty = await request(s.url + '/api/generate', { method: 'POST', rawBody: '' });
      expect([empty.status, empty.body]).toEqual([400, '{"error":"missing request body"}']);
      const bad = await request(s.url + '/api/chat', { rawBody: 'xyz' });
      expect(bad.status).toBe(400);
      expect(JSON.parse(bad.body).error).toBe("invalid character 'x' looking for beginning of value");
      const trunc = await request(s.url + '/api/chat', { rawBody: '{"model":' });
      expect([trunc.status, trunc.body]).toEqual([400, '{"error":"unexpected EOF"}']);
    });

    it('answers 503 with the exact busy message once more than maxQueue requests wait', async () => {
      const s = await sim({ numParallel: 1, maxQueue: 1, tokensPerSecond: 50 });
      const body = { model: 'llama3.2', prompt: 'x', options: { num_predict: 20 } };
      const first = request(s.url + '/api/generate', { body });
      await waitFor(() => s.stats().active === 1);
      const second = request(s.url + '/api/generate', { body });
      await waitFor(() => s.stats().queued === 1);
      const third = await request(s.url + '/api/generate', { body });
      expect(third.status).toBe(503);
      expect(third.body).toBe(BUSY);
      const v1 = await request(s.url + '/v1/chat/completions', {
        body: { model: 'llama3.2', messages: [{ role: 'user', content: 'x' }] },
      });
      expect(v1.status).toBe(503);
      expect(JSON.parse(v1.body)).toEqual({
        error: {
          message: 'server busy, please try again.  maximum pending requests exceeded',
          type: 'api_error',
          param: null,
          code: null,
        },
      });
      expect((await first).status).toBe(200);
      expect((await second).status).toBe(200);
    });
  });

  describe('scheduling', () => {
    it('numParallel 1: three concurrent requests run one after another, in order', async () => {
      const s = await sim({ numParallel: 1, tokensPerSecond: 50 });
      const body = (i: number) => ({ model: 'llama3.2', prompt: `p${i}`, options: { num_predict: 5 } });
      const p0 = request(s.url + '/api/generate', { body: body(0) });
      await waitFor(() => s.stats().active === 1);
      const p1 = request(s.url + '/api/generate', { body: body(1) });
      await waitFor(() => s.stats().queued === 1);
      const p2 = request(s.url + '/api/generate', { body: body(2) });
      await waitFor(() => s.stats().queued === 2);
      const rs = await Promise.all([p0, p1, p2]);
      for (let i = 1; i < 3; i++) {
        const prevEnd = rs[i - 1].lines[rs[i - 1].lines.length - 1].at;
        expect(rs[i].lines[0].at).toBeGreaterThanOrEqual(prevEnd);
      }
    });

    it('numParallel 3: three concurrent requests overlap', async () => {
      const s = await sim({ numParallel: 3, tokensPerSecond: 20 });
      const rs = await Promise.all(
        [0, 1, 2].map((i) =>
          request(s.url + '/api/generate', {
            body: { model: 'llama3.2', prompt: `p${i}`, options: { num_predict: 6 } },
          }),
        ),
      );
      const firstEnd = Math.min(...rs.map((r) => r.lines[r.lines.length - 1].at));
      for (const r of rs) expect(r.lines[0].at).toBeLessThan(firstEnd);
    });

    it('evicts the least recently used idle model when maxLoadedModels is reached', async () => {
      const s = await sim({ maxLoadedModels: 2 });
      const gen = (model: string) =>
        request(s.url + '/api/generate', { body: { model, prompt: 'x', stream: false, options: { num_predict: 1 } } });
      await gen('llama3.2');
      await gen('qwen2.5:7b');
      await gen('llama3.2'); // llama is now the most recently used
      await gen('mistral:7b');
      const ps = JSON.parse((await request(s.url + '/api/ps')).body)
        .models.map((m: any) => m.name)
        .sort();
      expect(ps).toEqual(['llama3.2:latest', 'mistral:7b']);
      expect(s.stats()).toMatchObject({ loads: 3, evictions: 1 });
    });

    it('a model that does not fit waits for the busy one instead of evicting it', async () => {
      const s = await sim({ maxLoadedModels: 1, tokensPerSecond: 50 });
      const long = request(s.url + '/api/generate', {
        body: { model: 'llama3.2', prompt: 'x', options: { num_predict: 15 } },
      });
      await waitFor(() => s.stats().active === 1);
      const other = request(s.url + '/api/generate', {
        body: { model: 'qwen2.5:7b', prompt: 'y', options: { num_predict: 1 } },
      });
      await waitFor(() => s.stats().queued === 1);
      const [a, b] = await Promise.all([long, other]);
      expect(b.lines[0].at).toBeGreaterThanOrEqual(a.lines[a.lines.length - 1].at);
      expect(s.stats()).toMatchObject({ evictions: 1, loaded: ['qwen2.5:7b'] });
    });

    it('reports load time in load_duration and as a loading model', async () => {
      const s = await sim({ loadMsPerGB: 200 }); // 2 GB -> 400 ms
      const r = JSON.parse(
        (
          await request(s.url + '/api/generate', {
            body: { model: 'llama3.2', prompt: 'x', stream: false, options: { num_predict: 1 } },
          })
        ).body,
      );
      expect(r.load_duration).toBeGreaterThanOrEqual(350e6);
    });

    it('keep_alive 0 unloads after the request; empty prompts load and unload', async () => {
      const s = await sim();
      const ps = async () => JSON.parse((await request(s.url + '/api/ps')).body).models.map((m: any) => m.name);
      await request(s.url + '/api/generate', {
        body: { model: 'llama3.2', prompt: 'x', stream: false, keep_alive: 0, options: { num_predict: 2 } },
      });
      expect(await ps()).toEqual([]);
      const load = await request(s.url + '/api/generate', { body: { model: 'llama3.2' } });
      expect(JSON.parse(load.body)).toMatchObject({ model: 'llama3.2', response: '', done: true, done_reason: 'load' });
      expect(await ps()).toEqual(['llama3.2:latest']);
      const chatLoad = JSON.parse(
        (await request(s.url + '/api/chat', { body: { model: 'qwen2.5:7b', messages: [] } })).body,
      );
      expect(chatLoad).toMatchObject({ done: true, done_reason: 'load', message: { role: 'assistant', content: '' } });
      const unload = await request(s.url + '/api/generate', { body: { model: 'llama3.2', keep_alive: 0 } });
      expect(JSON.parse(unload.body)).toMatchObject({ done: true, done_reason: 'unload' });
      expect(await ps()).toEqual(['qwen2.5:7b']);
      expect(s.stats().unloads).toBe(2);
    });

    it('expires idle models after keep-alive; negative keep_alive keeps them forever', async () => {
      const s = await sim({ keepAliveMs: 150 });
      await request(s.url + '/api/generate', {
        body: { model: 'llama3.2', prompt: 'x', stream: false, options: { num_predict: 1 } },
      });
      await request(s.url + '/api/generate', { body: { model: 'qwen2.5:7b', keep_alive: -1 } });
      await request(s.url + '/api/generate', { body: { model: 'mistral:7b', keep_alive: '10m' } });
      await waitFor(() => !s.stats().loaded.includes('llama3.2:latest'), 5000);
      const ps = JSON.parse((await request(s.url + '/api/ps')).body).models;
      expect(ps.map((m: any) => m.name)).toEqual(['qwen2.5:7b', 'mistral:7b']); // sorted by expires_at, descending
      expect(new Date(ps[1].expires_at).getTime()).toBeGreaterThan(Date.now() + 9 * 60_000);
      expect(s.stats().expirations).toBe(1);
    });

    it('objects with their own toString (a /v1/completions prompt, create files) do not crash it', async () => {
      const s = await sim();
      const r = await request(s.url + '/v1/completions', {
        body: { model: 'llama3.2', prompt: [{ toString: 1 }, 'hi'], max_tokens: 2 },
      });
      expect(r.status).toBe(200);
      expect((await request(s.url + '/api/version')).status).toBe(200);
      const created = await request(s.url + '/api/create', {
        body: { model: 'fuzz', files: { 'a.gguf': { toString: 1 } }, stream: false },
      });
      expect(created.status).toBe(200);
      expect((await request(s.url + '/api/version')).status).toBe(200);
    });

    it('a keep_alive past a Go Duration (1e300 s) is kept for good; /api/ps still answers', async () => {
      const s = await sim();
      for (const keep_alive of [1e300, 9.3e9])
        expect(
          (
            await request(s.url + '/api/generate', {
              body: { model: 'llama3.2', prompt: 'x', stream: false, keep_alive, options: { num_predict: 1 } },
            })
          ).status,
        ).toBe(200);
      await request(s.url + '/api/generate', { body: { model: 'qwen2.5:7b', keep_alive: 9e9 } }); // 285 years
      const res = await request(s.url + '/api/ps');
      expect(res.status).toBe(200);
      const ps = JSON.parse(res.body).models;
      expect(ps.map((m: any) => [m.name, m.expires_at.slice(0, 4)])).toEqual([
        ['llama3.2:latest', '2318'],
        ['qwen2.5:7b', String(new Date(Date.now() + 9e12).getUTCFullYear())],
      ]);
      expect(s.stats().loaded.sort()).toEqual(['llama3.2:latest', 'qwen2.5:7b']);
    });

    it('frees the slot at once when the client goes away mid-stream or while queued', async () => {
      const s = await sim({ numParallel: 1, tokensPerSecond: 20 });
      const ac = new AbortController();
      const long = request(s.url + '/api/generate', {
        body: { model: 'llama3.2', prompt: 'x', options: { num_predict: 200 } },
        signal: ac.signal,
      }).catch((e: Error) => e);
      await waitFor(() => s.stats().tokens >= 2);
      const ac2 = new AbortController();
      const queued = request(s.url + '/api/generate', {
        body: { model: 'llama3.2', prompt: 'y' },
        signal: ac2.signal,
      }).catch((e: Error) => e);
      await waitFor(() => s.stats().queued === 1);
      ac2.abort();
      await waitFor(() => s.stats().queued === 0);
      ac.abort();
      await waitFor(() => s.stats().active === 0);
      expect(s.stats().aborted).toBe(2);
      const tokensAtAbort = s.stats().tokens;
      const t0 = Date.now();
      const next = await request(s.url + '/api/generate', {
        body: { model: 'llama3.2', prompt: 'z', stream: false, options: { num_predict: 2 } },
      });
      expect(next.status).toBe(200);
      expect(Date.now() - t0).toBeLessThan(5000); // not the ~10 s the aborted stream had left
      expect(s.stats().tokens).toBe(tokensAtAbort + 2);
      await Promise.all([long, queued]);
    });
  });

  describe('model management', () => {
    it('pull streams progress to success and the model then appears in tags', async () => {
      const s = await sim({ pullMs: 200 });
      const r = await request(s.url + '/api/pull', { body: { model: 'phi3:3.8b' } });
      expect(r.headers['content-type']).toBe('application/x-ndjson');
      const objs = r.lines.map((l) => JSON.parse(l.line));
      expect(objs[0]).toEqual({ status: 'pulling manifest' });
      const progress = objs.filter((o) => typeof o.total === 'number');
      expect(progress.length).toBeGreaterThan(1);
      expect(progress[0].status).toMatch(/^pulling [0-9a-f]{12}$/);
      expect(progress[progress.length - 1].completed).toBe(progress[0].total);
      expect(objs.slice(-3)).toEqual([
        { status: 'verifying sha256 digest' },
        { status: 'writing manifest' },
        { status: 'success' },
      ]);
      const tags = JSON.parse((await request(s.url + '/api/tags')).body).models.map((m: any) => m.name);
      expect(tags).toContain('phi3:3.8b');
      const quiet = await request(s.url + '/api/pull', { body: { name: 'tinyllama', stream: false } });
      expect([quiet.status, quiet.body]).toEqual([200, '{"status":"success"}']);
    });

    it('pull of an unknown model fails with the manifest error', async () => {
      const s = await sim({ pullMs: 50, unpullable: ['private/model'] });
      const r = await request(s.url + '/api/pull', { body: { model: 'nonexistent-model' } });
      expect(r.status).toBe(200);
      expect(r.lines.map((l) => l.line)).toEqual([
        '{"status":"pulling manifest"}',
        '{"error":"pull model manifest: file does not exist"}',
      ]);
      const q = await request(s.url + '/api/pull', { body: { model: 'private/model', stream: false } });
      expect([q.status, q.body]).toEqual([500, '{"error":"pull model manifest: file does not exist"}']);
    });

    it('copy, delete, create, push and blobs', async () => {
      const s = await sim({ pullMs: 30 });
      const names = async () => JSON.parse((await request(s.url + '/api/tags')).body).models.map((m: any) => m.name);
      const cp = await request(s.url + '/api/copy', { body: { source: 'llama3.2', destination: 'mine' } });
      expect([cp.status, cp.body]).toEqual([200, '']);
      expect(await names()).toContain('mine:latest');
      const del = await request(s.url + '/api/delete', { method: 'DELETE', body: { model: 'mine' } });
      expect([del.status, del.body]).toEqual([200, '']);
      expect(await names()).not.toContain('mine:latest');
      const create = await request(s.url + '/api/create', { body: { model: 'custom', from: 'llama3.2' } });
      expect(JSON.parse(create.lines[create.lines.length - 1].line)).toEqual({ status: 'success' });
      expect(await names()).toContain('custom:latest');
      const push = await request(s.url + '/api/push', { body: { model: 'custom' } });
      expect(JSON.parse(push.lines[push.lines.length - 1].line)).toEqual({ status: 'success' });
      const data = Buffer.from('hello blob');
      const digest = 'sha256:' + createHash('sha256').update(data).digest('hex');
      expect((await request(`${s.url}/api/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);
      expect((await request(`${s.url}/api/blobs/${digest}`, { method: 'POST', rawBody: data })).status).toBe(201);
      expect((await request(`${s.url}/api/blobs/${digest}`, { method: 'HEAD' })).status).toBe(200);
    });
  });

  describe('OpenAI compatibility', () => {
    it('streams SSE chunks ending with data: [DONE], usage only when asked', async () => {
      const s = await sim();
      const body = { model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, stream: true };
      const r = await request(s.url + '/v1/chat/completions', { body, separator: '\n\n' });
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('text/event-stream');
      expect(r.body.endsWith('data: [DONE]\n\n')).toBe(true);
      const events = r.lines.map((l) => l.line);
      expect(events.every((e) => e.startsWith('data: '))).toBe(true);
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
      expect(chunks).toHaveLength(5);
      for (const c of chunks) {
        expect(c).toMatchObject({
          object: 'chat.completion.chunk',
          model: 'llama3.2',
          system_fingerprint: 'fp_ollama',
        });
        expect(c.id).toBe(chunks[0].id);
        expect(typeof c.created).toBe('number');
      }
      expect(chunks[0].choices[0]).toMatchObject({ index: 0, delta: { role: 'assistant' }, finish_reason: null });
      expect(chunks[4].choices[0].finish_reason).toBe('length');
      const withUsage = await request(s.url + '/v1/chat/completions', {
        body: { ...body, stream_options: { include_usage: true } },
        separator: '\n\n',
      });
      const usage = JSON.parse(withUsage.lines[withUsage.lines.length - 2].line.slice(6));
      expect(usage.choices).toEqual([]);
      expect(usage.usage).toMatchObject({ completion_tokens: 4 });
      const plain = JSON.parse(
        (await request(s.url + '/v1/chat/completions', { body: { ...body, stream: false } })).body,
      );
      expect(plain).toMatchObject({
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant' }, finish_reason: 'length' }],
        usage: { completion_tokens: 4 },
      });
      const text = chunks.map((c) => c.choices[0].delta.content).join('');
      expect(plain.choices[0].message.content).toBe(text);
      const comp = JSON.parse(
        (await request(s.url + '/v1/completions', { body: { model: 'llama3.2', prompt: 'hi', max_tokens: 3 } })).body,
      );
      expect(comp).toMatchObject({ object: 'text_completion', choices: [{ index: 0, finish_reason: 'length' }] });
    });

    it('lists models and answers errors in OpenAI shape', async () => {
      const s = await sim();
      const list = JSON.parse((await request(s.url + '/v1/models')).body);
      expect(list.object).toBe('list');
      expect(list.data).toContainEqual({
        id: 'llama3.2:latest',
        object: 'model',
        created: expect.any(Number),
        owned_by: 'library',
      });
      const one = JSON.parse((await request(s.url + '/v1/models/qwen2.5:7b')).body);
      expect(one).toMatchObject({ id: 'qwen2.5:7b', object: 'model' });
      const missing = await request(s.url + '/v1/models/ghost');
      expect(missing.status).toBe(404);
      expect(JSON.parse(missing.body)).toEqual({
        error: { message: 'model "ghost" not found', type: 'not_found_error', param: null, code: null },
      });
      const noModel = await request(s.url + '/v1/chat/completions', { body: { messages: [] } });
      expect(JSON.parse(noModel.body)).toEqual({
        error: { message: 'model is required', type: 'invalid_request_error', param: null, code: null },
      });
    });
  });

  describe('faults', () => {
    it('refuseConnections closes the listener (ECONNREFUSED) and re-opens the same port', async () => {
      const s = await sim();
      expect(await probe(s.url + '/')).toBe('ok:200');
      await s.update({ faults: { refuseConnections: true } });
      expect(await probe(s.url + '/')).toBe('ECONNREFUSED');
      expect(s.stats().refusingConnections).toBe(true);
      await s.update({ faults: { refuseConnections: false } });
      expect(await probe(s.url + '/')).toBe('ok:200');
    });

    it('refuseConnections resets a request arriving on an already open keep-alive connection', async () => {
      const s = await sim();
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        expect(await probe(s.url + '/', agent)).toBe('ok:200');
        await s.update({ faults: { refuseConnections: true } });
        expect(['ECONNRESET', 'ECONNREFUSED']).toContain(await probe(s.url + '/', agent));
      } finally {
        agent.destroy();
      }
    });

    it('hang reads the request and never answers; close() still ends it', async () => {
      const s = await sim({ faults: { hang: true } });
      const pending = request(s.url + '/api/tags').then(
        () => 'answered',
        (e: NodeJS.ErrnoException) => e.code,
      );
      const winner = await Promise.race([pending, sleep(400).then(() => 'silent')]);
      expect(winner).toBe('silent');
      expect(s.stats().requests).toBe(1);
      await s.close();
      expect(await pending).toBe('ECONNRESET');
    });

    it('stopMidStreamAfterChunks destroys the socket after N chunks', async () => {
      const s = await sim({ faults: { stopMidStreamAfterChunks: 3 } });
      const lines: string[] = [];
      const err = await new Promise<string>((resolve) => {
        const req = http.request(s.url + '/api/chat', { method: 'POST', agent: false }, (res) => {
          res.setEncoding('utf8');
          res.on('data', (c: string) => lines.push(...c.split('\n').filter(Boolean)));
          res.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
          res.on('end', () => resolve('ended'));
        });
        req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        req.end(JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'x' }] }));
      });
      expect(err).toBe('ECONNRESET');
      expect(lines).toHaveLength(3);
      expect(lines.every((l) => JSON.parse(l).done === false)).toBe(true);
      await waitFor(() => s.stats().active === 0);
    });

    it('error500, busy503 and delayHeadersMs', async () => {
      const s = await sim({ faults: { error500: true } });
      const body = { model: 'llama3.2', prompt: 'x', stream: false, options: { num_predict: 1 } };
      const e = await request(s.url + '/api/generate', { body });
      expect(e.status).toBe(500);
      expect(Object.keys(JSON.parse(e.body))).toEqual(['error']);
      expect((await request(s.url + '/api/tags')).status).toBe(200); // probes unaffected
      await s.update({ faults: { error500: 0.5 } });
      const statuses = [];
      for (let i = 0; i < 40; i++) statuses.push((await request(s.url + '/api/generate', { body })).status);
      expect(statuses).toContain(500);
      expect(statuses).toContain(200);
      await s.update({ faults: { error500: false, busy503: true } });
      const b = await request(s.url + '/api/chat', {
        body: { model: 'llama3.2', messages: [{ role: 'user', content: 'x' }] },
      });
      expect([b.status, b.body]).toEqual([503, BUSY]);
      await s.update({ faults: { busy503: false, delayHeadersMs: 300 } });
      const t0 = Date.now();
      const d = await request(s.url + '/api/version');
      expect(d.status).toBe(200);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    });

    it('is controlled over HTTP at /_sim/*', async () => {
      const s = await sim();
      const set = await request(s.url + '/_sim/config', { body: { faults: { busy503: true }, tokensPerSecond: 99 } });
      expect(set.status).toBe(200);
      expect(JSON.parse(set.body)).toMatchObject({ tokensPerSecond: 99, faults: { busy503: true } });
      expect((await request(s.url + '/api/generate', { body: { model: 'llama3.2', prompt: 'x' } })).status).toBe(503);
      await request(s.url + '/_sim/config', { body: { faults: { busy503: false } } });
      expect(s.config().faults).toEqual({});
      const load = await request(s.url + '/_sim/load', { body: { model: 'qwen2.5:7b' } });
      expect(JSON.parse(load.body)).toEqual({ ok: true, loaded: ['qwen2.5:7b'] });
      const stats = JSON.parse((await request(s.url + '/_sim/stats')).body);
      expect(stats).toMatchObject({
        loaded: ['qwen2.5:7b'],
        byRoute: { 'POST /api/generate': 1 },
        errorsByStatus: { 503: 1 },
      });
      expect(stats.models['qwen2.5:7b']).toMatchObject({ loaded: true, state: 'ready', slots: 1 });
    });
  });

  describe('fake NVML state', () => {
    it('writes the state file at start and follows the load', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'sim-nvml-'));
      const statePath = join(dir, 'state');
      const s = await sim({
        tokensPerSecond: 20,
        numParallel: 2,
        nvml: {
          statePath,
          throttleMs: 50,
          gpus: [{ name: 'NVIDIA H100 80GB HBM3', uuid: 'GPU-test-0', memTotalBytes: 80e9, powerLimitW: 700 }],
        },
      });
      const read = () =>
        Object.fromEntries(
          readFileSync(statePath, 'utf8')
            .trim()
            .split('\n')
            .map((l) => l.split('=') as [string, string]),
        );
      const idle = read();
      expect(idle).toMatchObject({
        gpu_count: '1',
        'gpu.0.uuid': 'GPU-test-0',
        'gpu.0.util_gpu': '0',
        'gpu.0.mem_used': '0',
        'gpu.0.process_count': '0',
      });
      const busy = request(s.url + '/api/generate', {
        body: { model: 'llama3.2', prompt: 'x', options: { num_predict: 30 } },
      });
      const during = await waitFor(() => {
        const st = read();
        return st['gpu.0.util_gpu'] === '50' ? st : undefined;
      });
      expect(Number(during['gpu.0.mem_used'])).toBe(2_000_000_000);
      expect(during['gpu.0.process_count']).toBe('1');
      expect(Number(during['gpu.0.power_usage'])).toBeGreaterThan(Number(idle['gpu.0.power_usage']));
      expect(Number(during['gpu.0.temperature'])).toBeGreaterThan(Number(idle['gpu.0.temperature']));
      await busy;
      await waitFor(() => read()['gpu.0.util_gpu'] === '0');
      expect(read()['gpu.0.mem_used']).toBe('2000000000');
    });
  });

  it('close() is idempotent and ends streams in flight', async () => {
    const s = await sim({ tokensPerSecond: 5 });
    const r = request(s.url + '/api/generate', { body: { model: 'llama3.2', prompt: 'x' } }).catch(
      (e: NodeJS.ErrnoException) => e.code,
    );
    await waitFor(() => s.stats().tokens >= 1);
    await Promise.all([s.close(), s.close(), s.kill()]);
    expect(await r).toMatch(/ECONNRESET|aborted/);
  });
});
