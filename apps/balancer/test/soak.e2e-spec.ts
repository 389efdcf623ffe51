import { mkdtempSync, writeFileSync } from 'fs';
import * as http from 'http';
import { tmpdir } from 'os';
import { join } from 'path';
import { SimServer } from '@app/ollama-sim';
import {
  Child,
  getJson,
  parseStream,
  rssOf,
  spawnBalancer,
  startSims,
  waitFor,
  waitIdle,
  writeConfigFile,
} from './harness';

/**
 * Soak: 10,000+ mixed requests (streamed and whole chat/generate, OpenAI SSE, embeddings, reads,
 * client aborts, bad input, a backend failing 30 % of its answers) through the real balancer process.
 * At the end every in-flight and queue count is zero and memory is flat. It runs with the default
 * retry budget (RETRY_BUDGET_RATIO 0.2, RETRY_BUDGET_MIN 10): every request that could succeed does.
 *
 * Memory: the balancer runs with --expose-gc and a test-only preload that, on SIGUSR2, collects
 * garbage and prints process.memoryUsage(). We compare the heap after a full GC once warmed up
 * (2,000 requests: JIT, pools, sockets, metrics series all created) with the heap after the run.
 * A leak of one small object per request (~1 KB) would add ~10 MB over 10,000 requests; the bound
 * is 8 MB of heap, well above GC noise (~1-2 MB) and below a per-request leak. RSS is reported and
 * bounded loosely (64 MB): it moves with allocator behaviour, not only with leaks.
 */
const TOTAL = 10_000;
const WARMUP = 2_000;
const CONCURRENCY = 24;
const model = 'llama3.2';
const embedModel = 'nomic-embed-text';
const MEMORY_PROBE =
  "process.on('SIGUSR2',()=>{globalThis.gc();globalThis.gc();process.stdout.write('MEM '+JSON.stringify(process.memoryUsage())+'\\n')});";

type Kind =
  | 'generate'
  | 'chat-stream'
  | 'sse'
  | 'embed'
  | 'read'
  | 'bad-json'
  | 'no-model'
  | 'unknown-model'
  | 'abort-early'
  | 'abort-mid';

function kindOf(i: number): Kind {
  const r = (i * 7919) % 100;
  if (r < 33) return 'generate';
  if (r < 55) return 'chat-stream';
  if (r < 65) return 'sse';
  if (r < 75) return 'embed';
  if (r < 80) return 'read';
  if (r < 83) return 'bad-json';
  if (r < 86) return 'no-model';
  if (r < 89) return 'unknown-model';
  if (r < 94) return 'abort-early';
  return 'abort-mid';
}

interface Result {
  kind: Kind;
  ok: boolean;
  detail: string;
}

function one(url: string, agent: http.Agent, i: number): Promise<Result> {
  const kind = kindOf(i);
  let method = 'POST';
  let path = '/api/generate';
  let body: string | undefined;
  switch (kind) {
    case 'generate':
      body = JSON.stringify({ model, prompt: `g${i}`, stream: false, options: { num_predict: 3 } });
      break;
    case 'chat-stream':
    case 'abort-mid':
      path = '/api/chat';
      body = JSON.stringify({
        model,
        messages: [{ role: 'user', content: `c${i}` }],
        options: { num_predict: kind === 'abort-mid' ? 200 : 4 },
      });
      break;
    case 'sse':
      path = '/v1/chat/completions';
      body = JSON.stringify({ model, stream: true, max_tokens: 4, messages: [{ role: 'user', content: `o${i}` }] });
      break;
    case 'embed':
      path = '/api/embed';
      body = JSON.stringify({ model: embedModel, input: [`e${i}`, 'x'] });
      break;
    case 'read':
      method = 'GET';
      path = i % 2 ? '/api/tags' : '/api/ps';
      break;
    case 'bad-json':
      body = '{"model": "llama3.2", "prompt": ';
      break;
    case 'no-model':
      body = JSON.stringify({ prompt: 'x' });
      break;
    case 'unknown-model':
      body = JSON.stringify({ model: `missing-${i % 5}:1b`, prompt: 'x' });
      break;
    case 'abort-early':
      body = JSON.stringify({ model, prompt: `a${i}`, stream: false, options: { num_predict: 50 } });
      break;
  }
  const u = new URL(url + path);
  return new Promise((resolve) => {
    const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
    const req = http.request({ hostname: u.hostname, port: u.port, path, method, headers, agent }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString('utf8');
        if (kind === 'abort-mid') req.destroy();
      });
      res.on('end', () => {
        const s = res.statusCode ?? 0;
        const objs = parseStream(text);
        const last = objs[objs.length - 1];
        let ok: boolean;
        switch (kind) {
          case 'generate':
            ok = s === 200 && last?.done === true;
            break;
          case 'chat-stream':
            ok = s === 200 && last?.done === true && !objs.some((o) => o?.error !== undefined);
            break;
          case 'sse':
            ok = s === 200 && last === '[DONE]';
            break;
          case 'embed':
            ok = s === 200 && Array.isArray(last?.embeddings) && last.embeddings.length === 2;
            break;
          case 'read':
            ok = s === 200 && Array.isArray(last?.models);
            break;
          case 'bad-json':
          case 'no-model':
            ok = s === 400 && typeof last?.error === 'string';
            break;
          case 'unknown-model':
            ok = s === 404 && typeof last?.error === 'string';
            break;
          case 'abort-early':
          case 'abort-mid':
            ok = true; // an aborted request may finish before the abort lands
        }
        resolve({ kind, ok, detail: ok ? '' : `${kind} ${s} ${text.slice(0, 200)}` });
      });
      res.on('error', () => resolve({ kind, ok: kind.startsWith('abort'), detail: `${kind} response error` }));
      res.on('close', () => resolve({ kind, ok: kind.startsWith('abort'), detail: `${kind} closed early` }));
    });
    req.on('error', (e) => resolve({ kind, ok: kind.startsWith('abort'), detail: `${kind} ${e.message}` }));
    if (kind === 'abort-early') setTimeout(() => req.destroy(), 1 + (i % 5));
    req.end(body);
  });
}

async function run(url: string, from: number, to: number): Promise<Result[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const results: Result[] = [];
  let next = from;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < to) {
        const i = next++;
        results.push(await one(url, agent, i));
      }
    }),
  );
  agent.destroy();
  return results;
}

/** The preload lives in a temp file: it is test-only and never part of the app. */
function writeProbe(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'soak-')), 'memory-probe.js');
  writeFileSync(file, MEMORY_PROBE);
  return file;
}

async function memory(child: Child): Promise<NodeJS.MemoryUsage> {
  const seen = (child.output().match(/^MEM .*$/gm) ?? []).length;
  child.proc.kill('SIGUSR2');
  let line = '';
  await waitFor(
    () => {
      const all = child.output().match(/^MEM .*$/gm) ?? [];
      if (all.length > seen) line = all[all.length - 1];
      return line !== '';
    },
    10_000,
    'memory report',
  );
  return JSON.parse(line.slice(4));
}

/** The sum of balancer_retries_total over its series, from the Prometheus endpoint. */
async function retriesTotal(url: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get(`${url}/metrics`, (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (b += c));
        res.on('end', () => resolve(b));
      })
      .on('error', reject);
  });
  let sum = 0;
  for (const line of text.split('\n'))
    if (line.startsWith('balancer_retries_total')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

describe('soak', () => {
  let sims: SimServer[] = [];
  let child: Child | undefined;
  afterAll(async () => {
    if (child && child.proc.exitCode === null) child.proc.kill('SIGKILL');
    await Promise.all(sims.map((s) => s.close()));
  });

  it(`${TOTAL} mixed requests: every good one succeeds, counts end at zero, memory flat`, async () => {
    const fast = { tokensPerSecond: 5000, promptTokensPerSecond: 1e7, numParallel: 8, loaded: [model, embedModel] };
    sims = await startSims([fast, fast, { ...fast, faults: { error500: 0.3 } }]);
    const file = writeConfigFile({ backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url })) });
    child = await spawnBalancer(
      {
        BALANCER_CONFIG: file,
        LOG_REQUESTS: 'false',
        HEALTH_INTERVAL_MS: '1000',
        HEALTH_TIMEOUT_MS: '5000',
        BACKEND_PARALLEL: '8',
        EJECT_BASE_MS: '500',
      },
      ['--expose-gc', '-r', writeProbe()],
    );
    const url = child.url;
    await waitFor(
      async () =>
        (await getJson(`${url}/balancer/status`)).body.backends.every(
          (b: any) => b.health === 'healthy' && b.inventoryAt !== null,
        ),
      10_000,
      'healthy',
    );

    const started = Date.now();
    const warm = await run(url, 0, WARMUP);
    await waitIdle(url);
    const memWarm = await memory(child);
    const rssWarm = rssOf(child.proc.pid!);
    const rest = await run(url, WARMUP, TOTAL);
    const elapsed = Date.now() - started;
    const st = await waitIdle(url, 15_000);
    const memEnd = await memory(child);
    const retries = await retriesTotal(url);
    const rssEnd = rssOf(child.proc.pid!);

    const all = [...warm, ...rest];
    const failed = all.filter((r) => !r.ok);
    const byKind: Record<string, number> = {};
    for (const r of all) byKind[r.kind] = (byKind[r.kind] ?? 0) + 1;
    const heapGrowthMb = (memEnd.heapUsed - memWarm.heapUsed) / 1e6;
    const rssGrowthMb = (rssEnd - rssWarm) / 1e6;
    const report = {
      requests: all.length,
      seconds: elapsed / 1000,
      perSecond: Math.round(all.length / (elapsed / 1000)),
      byKind,
      failed: failed.length,
      b3Errors: sims[2].stats().errorsByStatus['500'] ?? 0,
      retries,
      ejections: st.counters.ejections,
      heapUsedMb: [memWarm.heapUsed / 1e6, memEnd.heapUsed / 1e6].map((x) => Math.round(x * 10) / 10),
      rssMb: [rssWarm / 1e6, rssEnd / 1e6].map((x) => Math.round(x)),
    };
    process.stdout.write(`soak: ${JSON.stringify(report)}\n`);
    if (failed.length > 0) process.stdout.write(`events: ${JSON.stringify(st.events)}\n`);

    expect(all).toHaveLength(TOTAL);
    expect(failed.slice(0, 5).map((r) => r.detail)).toEqual([]);
    // The failing backend really failed (how often depends on how much of the run its ejections
    // cover, so only a floor), was ejected, and its failures were absorbed by retries elsewhere:
    // its 500s were retried on another backend (all but the few whose client had already gone).
    expect(report.b3Errors).toBeGreaterThan(20);
    expect(report.ejections).toBeGreaterThan(0);
    expect(retries).toBeGreaterThanOrEqual(Math.floor(report.b3Errors * 0.9));
    expect(st.queue.length).toBe(0);
    for (const b of st.backends) {
      expect(b.inFlight).toBe(0);
      expect(b.inFlightByModel).toEqual({});
    }
    await waitFor(() => sims.every((s) => s.stats().active === 0), 5000, 'backends idle');
    expect(heapGrowthMb).toBeLessThan(8);
    expect(rssGrowthMb).toBeLessThan(64);
  }, 180_000);
});
