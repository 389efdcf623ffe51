import { SimServer } from '@app/ollama-sim';
import {
  Child,
  getJson,
  parseStream,
  request,
  spawnBalancer,
  startSims,
  streamTimed,
  TimedChunk,
  waitFor,
  writeConfigFile,
} from './harness';

/**
 * SIGTERM on the real process (apps/balancer/src/main.ts): readiness 503 at once, new requests 503
 * with Connection: close (or refused), streams already running finish, then exit 0. Past
 * DRAIN_TIMEOUT_MS a stream still running ends with an error line instead of hanging the exit.
 */
const model = 'llama3.2';
const chat = (content: string, n: number) => ({
  model,
  messages: [{ role: 'user', content }],
  options: { num_predict: n },
});

describe('drain on SIGTERM', () => {
  let sims: SimServer[] = [];
  let child: Child | undefined;
  afterEach(async () => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
    child = undefined;
    await Promise.all(sims.map((s) => s.close()));
    sims = [];
  });

  async function boot(env: Record<string, string>): Promise<Child> {
    sims = await startSims([
      { tokensPerSecond: 20, numParallel: 4, loaded: [model] },
      { tokensPerSecond: 20, numParallel: 4, loaded: [model] },
    ]);
    const file = writeConfigFile({ backends: sims.map((s, i) => ({ name: `b${i + 1}`, url: s.url })) });
    const c = await spawnBalancer({ BALANCER_CONFIG: file, LOG_REQUESTS: 'false', ...env });
    await waitFor(async () => (await getJson(`${c.url}/health/ready`)).status === 200, 10_000, 'ready');
    return c;
  }

  it('readiness 503 at once, new requests 503, running streams finish with done:true, exit 0', async () => {
    child = await boot({ DRAIN_TIMEOUT_MS: '30000' });
    const url = child.url;
    const firsts: boolean[] = [false, false, false, false];
    const streams = [0, 1, 2, 3].map((i) =>
      streamTimed(
        `${url}/${i % 2 ? 'api/chat' : 'v1/chat/completions'}`,
        i % 2
          ? chat(`s${i}`, 30)
          : { model, stream: true, max_tokens: 30, messages: [{ role: 'user', content: `s${i}` }] },
        () => (firsts[i] = true),
      ),
    );
    await waitFor(() => firsts.every(Boolean), 15_000, 'every stream under way');
    child.proc.kill('SIGTERM');
    // Readiness turns at once (well before the ~1.5 s streams end).
    await waitFor(async () => (await getJson(`${url}/health/ready`)).status === 503, 1000, 'readiness 503');
    const ready = await getJson(`${url}/health/ready`);
    expect(JSON.stringify(ready.body)).toMatch(/draining/);
    const fresh = await request(`${url}/api/chat`, { body: { ...chat('late', 3), stream: false } }).catch(
      (e: NodeJS.ErrnoException) => e,
    );
    if (fresh instanceof Error) expect(fresh.code).toBe('ECONNREFUSED');
    else {
      expect(fresh.status).toBe(503);
      expect(fresh.headers.connection).toBe('close');
      expect(fresh.headers['retry-after']).toBeDefined();
      expect(fresh.body.error).toMatch(/shutting down/);
    }
    const done = await Promise.all(streams);
    done.forEach((s, i) => {
      expect(s.status).toBe(200);
      const objs = parseStream(s.chunks.map((c: TimedChunk) => c.text).join(''));
      if (i % 2) expect(objs[objs.length - 1].done).toBe(true);
      else expect(objs[objs.length - 1]).toBe('[DONE]');
      expect(objs.some((o) => o?.error !== undefined)).toBe(false);
    });
    expect(await child.exited).toBe(0);
    expect(child.output()).toMatch(/SIGTERM: draining/);
  }, 60_000);

  it('a stream longer than DRAIN_TIMEOUT_MS ends with an error line, and the process still exits 0', async () => {
    child = await boot({ DRAIN_TIMEOUT_MS: '500' });
    let started = false;
    const long = streamTimed(`${child.url}/api/chat`, chat('very long', 400), () => (started = true));
    await waitFor(() => started, 15_000, 'stream under way');
    child.proc.kill('SIGTERM');
    const s = await long;
    const objs = parseStream(s.chunks.map((c) => c.text).join(''));
    expect(objs[objs.length - 1].error).toMatch(/shutting down: drain timeout of 500 ms/);
    expect(objs.some((o) => o.done === true)).toBe(false);
    expect(await child.exited).toBe(0);
    // The backend was told too: its slot was freed (the upstream request was aborted).
    await waitFor(() => sims.every((x) => x.stats().active === 0), 5000, 'backend slots free');
  }, 60_000);
});
