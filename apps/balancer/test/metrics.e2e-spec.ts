/**
 * /metrics and the JSON logs, end to end: real balancer, two simulated Ollama servers, streamed and
 * non-streamed requests, a failing backend (retries, ejection), then a scrape parsed as Prometheus
 * text and the stdout lines parsed as JSON.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { Cluster, request, startCluster, streamTimed, waitFor } from './harness';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Strict enough to fail on a malformed line: every sample line must match the text format. */
function parsePrometheus(text: string): { samples: Sample[]; types: Record<string, string>; helps: Set<string> } {
  const samples: Sample[] = [];
  const types: Record<string, string> = {};
  const helps = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) {
      helps.add(line.split(' ')[2]);
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(type);
      types[name] = type;
      continue;
    }
    if (line.startsWith('#')) continue;
    const m =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (-?[0-9.e+-]+|[Nn]a[Nn]|[+-]Inf)$/.exec(
        line,
      );
    // Prometheus reads values with Go's ParseFloat, which takes NaN in any case (prom-client writes "Nan").
    if (!m) throw new Error(`not Prometheus text: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { samples, types, helps };
}

const matching = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
const total = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  matching(samples, name, labels).reduce((a, s) => a + s.value, 0);

const model = 'llama3.2';
const SECRET_PROMPT = 'the-launch-code-is-0000';
const SECRET_BEARER = 'Bearer sk-never-log-this-1234';

describe('balancer /metrics and JSON logs', () => {
  let c: Cluster;
  let out: string[];
  let spy: jest.SpyInstance;

  beforeAll(async () => {
    out = [];
    const write = process.stdout.write.bind(process.stdout);
    spy = jest.spyOn(process.stdout, 'write').mockImplementation(((chunk: any, ...rest: any[]) => {
      const s = String(chunk);
      if (s.startsWith('{"level"')) {
        out.push(s);
        return true;
      }
      return write(chunk, ...rest);
    }) as any);
    c = await startCluster([{ tokensPerSecond: 400 }, { tokensPerSecond: 400 }], {
      ROUTING_POLICY: 'round-robin',
      LOG_REQUESTS: 'true',
      LOG_LEVEL: 'debug',
      EJECT_CONSECUTIVE_FAILURES: '2',
      EJECT_BASE_MS: '60000',
      RETRY_MAX_ATTEMPTS: '2',
    });
  });

  afterAll(async () => {
    await c?.close();
    spy?.mockRestore();
  });

  it('counts requests, latency, tokens from the final chunks, routing, retries and ejections; logs one JSON line per request', async () => {
    // Streamed chats and non-streamed generates, all served.
    const streamed = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        streamTimed(`${c.url}/api/chat`, {
          model,
          messages: [{ role: 'user', content: `${SECRET_PROMPT} ${i}` }],
          options: { num_predict: 6 },
        }),
      ),
    );
    const streamedFinal = streamed.map((r) => {
      expect(r.status).toBe(200);
      const lines = r.chunks
        .map((ch) => ch.text)
        .join('')
        .trim()
        .split('\n');
      return JSON.parse(lines[lines.length - 1]);
    });
    const plain = [];
    for (let i = 0; i < 2; i++) {
      const r = await request(`${c.url}/api/generate`, {
        body: { model, prompt: `${SECRET_PROMPT} g${i}`, stream: false, options: { num_predict: 5 } },
        headers: { 'x-request-id': `req-metrics-${i}`, authorization: SECRET_BEARER },
      });
      expect(r.status).toBe(200);
      expect(r.headers['x-request-id']).toBe(`req-metrics-${i}`);
      plain.push(r.body);
    }
    const evalTokens = [...streamedFinal, ...plain].reduce((s, f) => s + f.eval_count, 0);
    const promptTokens = [...streamedFinal, ...plain].reduce((s, f) => s + f.prompt_eval_count, 0);
    expect(evalTokens).toBe(4 * 6 + 2 * 5);

    // A model nobody has, an unknown path, a read fanned out by the balancer.
    expect(
      (await request(`${c.url}/api/generate`, { body: { model: 'no-such-model', prompt: 'x', stream: false } })).status,
    ).toBe(404);
    expect((await request(`${c.url}/api/nonsense`)).status).toBe(404);
    expect((await request(`${c.url}/api/tags`)).status).toBe(200);

    // b1 starts failing: round-robin sends it every other request; each is retried on b2 before the
    // first byte, and two failures in a row eject b1.
    await c.sims[0].update({ faults: { error500: true } });
    for (let i = 0; i < 4; i++) {
      const r = await request(`${c.url}/api/generate`, {
        body: { model, prompt: 'retry me', stream: false, options: { num_predict: 2 } },
      });
      expect(r.status).toBe(200);
      expect(r.headers['x-balancer-backend']).toBe('b2');
    }

    const res = await fetch(`${c.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const { samples, types, helps } = parsePrometheus(text);

    const expected: Record<string, string> = {
      balancer_requests_total: 'counter',
      balancer_request_duration_seconds: 'histogram',
      balancer_time_to_first_byte_seconds: 'histogram',
      balancer_backend_in_flight: 'gauge',
      balancer_queue_length: 'gauge',
      balancer_queue_wait_seconds: 'histogram',
      balancer_tokens_per_second: 'histogram',
      balancer_eval_tokens_total: 'counter',
      balancer_prompt_eval_tokens_total: 'counter',
      balancer_eval_duration_seconds_total: 'counter',
      balancer_model_load_duration_seconds: 'histogram',
      balancer_retries_total: 'counter',
      balancer_ejections_total: 'counter',
      balancer_routing_decisions_total: 'counter',
      balancer_backend_up: 'gauge',
      balancer_backend_available: 'gauge',
      balancer_response_bytes_total: 'counter',
      balancer_queue_rejected_total: 'counter',
      balancer_queue_timeouts_total: 'counter',
    };
    for (const [name, type] of Object.entries(expected)) {
      expect({ name, type: types[name] }).toEqual({ name, type });
      expect(helps.has(name)).toBe(true);
    }

    const chat = { route: '/api/chat', model: 'llama3.2:latest' };
    expect(total(samples, 'balancer_requests_total', { ...chat, status: '200' })).toBe(4);
    expect(
      total(samples, 'balancer_requests_total', { route: '/api/generate', model: 'llama3.2:latest', status: '200' }),
    ).toBe(6);
    expect(
      total(samples, 'balancer_requests_total', {
        route: '/api/generate',
        model: 'unknown',
        backend: 'none',
        status: '404',
      }),
    ).toBe(1);
    expect(total(samples, 'balancer_requests_total', { route: 'other', status: '404' })).toBe(1);
    expect(total(samples, 'balancer_requests_total', { route: '/api/tags', status: '200' })).toBe(1);
    expect(total(samples, 'balancer_request_duration_seconds_count', chat)).toBe(4);
    expect(total(samples, 'balancer_time_to_first_byte_seconds_count', chat)).toBe(4);
    expect(total(samples, 'balancer_request_duration_seconds_sum', chat)).toBeGreaterThan(0);
    // Every histogram's +Inf bucket equals its count.
    for (const s of matching(samples, 'balancer_request_duration_seconds_count')) {
      const { backend, route, model: m } = s.labels;
      expect(total(samples, 'balancer_request_duration_seconds_bucket', { backend, route, model: m, le: '+Inf' })).toBe(
        s.value,
      );
    }

    // Token counters come from the final chunks that streamed past.
    expect(total(samples, 'balancer_eval_tokens_total', { model: 'llama3.2:latest' })).toBe(evalTokens + 4 * 2);
    expect(total(samples, 'balancer_prompt_eval_tokens_total', { model: 'llama3.2:latest' })).toBeGreaterThanOrEqual(
      promptTokens,
    );
    expect(total(samples, 'balancer_eval_duration_seconds_total', { model: 'llama3.2:latest' })).toBeGreaterThan(0);
    expect(total(samples, 'balancer_tokens_per_second_count', { model: 'llama3.2:latest' })).toBe(10);
    const tpsSum = total(samples, 'balancer_tokens_per_second_sum', { model: 'llama3.2:latest' });
    expect(tpsSum / 10).toBeGreaterThan(50); // the sims generate at 400 tokens/s
    expect(total(samples, 'balancer_model_load_duration_seconds_count', { model: 'llama3.2:latest' })).toBe(10);

    // Routing, queue, retries, ejections, health.
    expect(total(samples, 'balancer_routing_decisions_total')).toBeGreaterThanOrEqual(12);
    expect(
      matching(samples, 'balancer_routing_decisions_total').every(
        (s) => s.labels.reason && ['b1', 'b2'].includes(s.labels.backend),
      ),
    ).toBe(true);
    expect(total(samples, 'balancer_queue_wait_seconds_count', { model: 'llama3.2:latest' })).toBe(10);
    expect(total(samples, 'balancer_queue_length')).toBe(0);
    expect(
      total(samples, 'balancer_retries_total', { route: '/api/generate', model: 'llama3.2:latest' }),
    ).toBeGreaterThanOrEqual(2);
    expect(
      total(samples, 'balancer_requests_total', { route: '/api/generate', backend: 'b2', status: '200' }),
    ).toBeGreaterThanOrEqual(4);
    expect(total(samples, 'balancer_ejections_total', { backend: 'b1' })).toBe(1);
    expect(total(samples, 'balancer_ejections_total', { backend: 'b2' })).toBe(0);
    expect(total(samples, 'balancer_backend_ejected', { backend: 'b1' })).toBe(1);
    expect(total(samples, 'balancer_backend_available', { backend: 'b1' })).toBe(0);
    expect(total(samples, 'balancer_backend_up', { backend: 'b2' })).toBe(1);
    expect(matching(samples, 'balancer_backend_in_flight').map((s) => [s.labels.backend, s.value])).toEqual([
      ['b1', 0],
      ['b2', 0],
    ]);
    // Default process metrics ride along.
    expect(total(samples, 'process_cpu_seconds_total')).toBeGreaterThan(0);

    // Bounded labels: no request id, prompt or path outside the fixed set.
    expect(text).not.toContain('req-metrics-');
    expect(text).not.toContain(SECRET_PROMPT);
    expect(text).not.toContain('sk-never-log-this');
    const routes = new Set(matching(samples, 'balancer_requests_total').map((s) => s.labels.route));
    for (const r of routes) expect(['/api/chat', '/api/generate', '/api/tags', 'other']).toContain(r);

    // Logs: plain JSON lines, one per request, no prompt, no credential.
    await waitFor(
      () => out.some((l) => l.includes('"event":"backend"') && l.includes('ejected')),
      5000,
      'the ejection log line',
    );
    const lines = out
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const reqLines = lines.filter((l) => l.event === 'request');
    expect(reqLines.length).toBe(4 + 2 + 3 + 4);
    const g0 = reqLines.find((l) => l.id === 'req-metrics-0');
    expect(g0).toMatchObject({
      level: 'info',
      method: 'POST',
      path: '/api/generate',
      model: 'llama3.2:latest',
      status: 200,
      retries: 0,
      evalCount: 5,
    });
    expect(['b1', 'b2']).toContain(g0.backend);
    expect(typeof g0.time).toBe('string');
    expect(g0.bytes).toBeGreaterThan(0);
    expect(g0.ttfbMs).toBeGreaterThanOrEqual(0);
    expect(g0.durationMs).toBeGreaterThanOrEqual(g0.ttfbMs);
    expect(g0.reason).toEqual(expect.any(String));
    expect(reqLines.filter((l) => l.retries > 0).length).toBeGreaterThanOrEqual(2);
    expect(reqLines.every((l) => typeof l.id === 'string' && l.id.length > 0)).toBe(true);
    expect(lines.filter((l) => l.event === 'route').length).toBeGreaterThanOrEqual(12);
    const all = out.join('');
    expect(all).not.toContain(SECRET_PROMPT);
    expect(all).not.toContain('sk-never-log-this');
    expect(all.includes('\u001b[')).toBe(false); // no ANSI colours
  });

  it('the Grafana dashboard queries only series the balancer and the gpu-agent expose', async () => {
    const root = join(__dirname, '../../..');
    const dash = JSON.parse(readFileSync(join(root, 'grafana/ollama-balancer.json'), 'utf8'));
    const exprs: string[] = [];
    const walk = (o: any): void => {
      if (Array.isArray(o)) o.forEach(walk);
      else if (o && typeof o === 'object') {
        for (const [k, v] of Object.entries(o)) {
          if (k === 'expr' && typeof v === 'string') exprs.push(v);
          else walk(v);
        }
      }
    };
    walk(dash.panels);
    expect(exprs.length).toBeGreaterThan(20);
    const { types } = parsePrometheus(await (await fetch(`${c.url}/metrics`)).text());
    const agentSource = readFileSync(join(root, 'apps/gpu-agent/src/metrics/metrics.service.ts'), 'utf8');
    const names = new Set(
      exprs.flatMap((e) => e.match(/\b(balancer_[a-z_]+|DCGM_FI_[A-Z_]+|ollama_[a-z_]+|gpu_agent_[a-z_]+)\b/g) ?? []),
    );
    for (const n of names) {
      if (n.startsWith('balancer_'))
        expect({ n, exposed: n.replace(/_(bucket|sum|count)$/, '') in types }).toEqual({ n, exposed: true });
      else expect({ n, exposed: agentSource.includes(`'${n}'`) }).toEqual({ n, exposed: true });
    }
    expect([...names].some((n) => n.startsWith('DCGM_FI_'))).toBe(true);
  });

  it('GET /metrics needs no admin token and is not an Ollama route', async () => {
    const r = await request(`${c.url}/metrics`);
    expect(r.status).toBe(200);
    expect(r.text).toContain('# TYPE balancer_requests_total counter');
  });
});
