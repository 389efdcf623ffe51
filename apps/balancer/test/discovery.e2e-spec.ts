import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { AddressInfo } from 'net';
import { SimServer, startSimServer } from '@app/ollama-sim';
import { AppModule } from '../src/app.module';
import { BALANCER_CONFIG, loadBalancerConfig } from '../src/config/balancer-config';
import { DNS_RESOLVER } from '../src/fleet/dns-discovery.service';
import { FAST_ENV, freePort, getJson, parseStream, request, streamTimed, waitFor, waitIdle } from './harness';

/**
 * DNS discovery (OLLAMA_BACKENDS_DNS) with the real balancer and simulated servers on real
 * addresses: three loopback addresses (127.0.0.2-4), one port, as a headless Service's pods would
 * be. Only the name lookup is the test's (injected through DNS_RESOLVER): there is no DNS server
 * here to change.
 */
const model = 'llama3.2';
const ADDRS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];

/** Starts one simulated server on each address, all on one port. */
async function simsOnOnePort(): Promise<{ port: number; sims: SimServer[] }> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await freePort();
    const sims: SimServer[] = [];
    try {
      for (const [i, host] of ADDRS.entries())
        sims.push(
          await startSimServer({
            name: `sim${i + 2}`,
            host,
            port,
            tokensPerSecond: 20,
            numParallel: 4,
            loaded: [model],
          }),
        );
      return { port, sims };
    } catch {
      await Promise.all(sims.map((s) => s.close()));
    }
  }
  throw new Error('no port free on every loopback address');
}

describe('DNS discovery: a name re-resolved on a schedule', () => {
  let sims: SimServer[] = [];
  let port = 0;
  let app: INestApplication | undefined;
  let url = '';
  /** What the name resolves to now (or the error its lookup fails with), and how often it was asked. */
  let answer: string[] | Error = [];
  let lookups = 0;
  const resolver = (host: string) => {
    lookups++;
    if (host !== 'ollama.test')
      return Promise.reject(Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' }));
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve([...answer]);
  };

  beforeAll(async () => {
    ({ port, sims } = await simsOnOnePort());
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  afterAll(async () => {
    await Promise.all(sims.map((s) => s.close()));
  });

  async function boot(env: Record<string, string> = {}): Promise<void> {
    const config = loadBalancerConfig({
      ...FAST_ENV,
      OLLAMA_BACKENDS_DNS: `ollama.test:${port}`,
      DISCOVERY_INTERVAL_MS: '50',
      ...env,
    });
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(BALANCER_CONFIG)
      .useValue(config)
      .overrideProvider(DNS_RESOLVER)
      .useValue(resolver)
      .compile();
    app = moduleRef.createNestApplication({ logger: ['error'] });
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  }

  const name = (addr: string) => `${addr}:${port}`;
  const status = async () =>
    (await getJson(`${url}/balancer/status`)).body as {
      backends: {
        name: string;
        source: string;
        health: string;
        retiring: string | null;
        inFlight: number;
        url: string;
      }[];
    };
  const byName = async () => Object.fromEntries((await status()).backends.map((b) => [b.name, b]));
  const generate = (prompt: string, n = 3) =>
    request(`${url}/api/generate`, { body: { model, prompt, stream: false, options: { num_predict: n } } });

  it('every address becomes a backend, probed at once, and serves', async () => {
    answer = [ADDRS[0], ADDRS[1]];
    await boot();
    await waitFor(
      async () => {
        const b = await byName();
        return b[name(ADDRS[0])]?.health === 'healthy' && b[name(ADDRS[1])]?.health === 'healthy';
      },
      20_000,
      'both discovered backends healthy',
    );
    const b = await byName();
    expect(Object.keys(b).sort()).toEqual([name(ADDRS[0]), name(ADDRS[1])]);
    expect(b[name(ADDRS[0])]).toMatchObject({ source: 'dns', retiring: null, url: `http://${name(ADDRS[0])}` });

    const served = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const r = await generate(`p${i}`);
      expect(r.status).toBe(200);
      served.add(String(r.headers['x-balancer-backend']));
    }
    expect([...served].every((s) => s === name(ADDRS[0]) || s === name(ADDRS[1]))).toBe(true);
  });

  it('an address that vanishes is drained: its stream finishes, no new request goes there, then it is removed', async () => {
    answer = [ADDRS[0]];
    await boot();
    await waitFor(
      async () => (await byName())[name(ADDRS[0])]?.health === 'healthy',
      20_000,
      'the first backend healthy',
    );
    // A stream of ~2 s on the only backend.
    let first = false;
    const stream = streamTimed(
      `${url}/api/generate`,
      { model, prompt: 'long', options: { num_predict: 40 } },
      () => (first = true),
    );
    await waitFor(() => first, 15_000, 'the stream under way');

    answer = [ADDRS[1]];
    await waitFor(
      async () => (await byName())[name(ADDRS[0])]?.retiring !== null,
      10_000,
      'the vanished address retiring',
    );
    const during = await byName();
    expect(during[name(ADDRS[0])]).toMatchObject({ retiring: `gone from DNS ollama.test`, inFlight: 1 });
    await waitFor(
      async () => (await byName())[name(ADDRS[1])]?.health === 'healthy',
      20_000,
      'the new address healthy',
    );
    // New requests while the old one drains: all on the new address.
    for (let i = 0; i < 6; i++) {
      const r = await generate(`during${i}`);
      expect(r.status).toBe(200);
      expect(r.headers['x-balancer-backend']).toBe(name(ADDRS[1]));
    }
    const s = await stream;
    expect(s.status).toBe(200);
    expect(s.headers['x-balancer-backend']).toBe(name(ADDRS[0]));
    const objs = parseStream(s.chunks.map((c) => c.text).join(''));
    expect(objs[objs.length - 1]).toMatchObject({ done: true });
    expect(objs.some((o) => o?.error !== undefined)).toBe(false);
    // Drained: removed once its last request ended.
    await waitFor(async () => !(name(ADDRS[0]) in (await byName())), 10_000, 'the drained backend removed');
    const events = (await getJson(`${url}/balancer/status`)).body.events as { backend: string; event: string }[];
    expect(events.filter((e) => e.backend === name(ADDRS[0])).map((e) => e.event)).toEqual(
      expect.arrayContaining(['joined', 'retiring']),
    );
    await waitIdle(url);
  });

  it('a dual-stack answer counts each server once (its IPv4 address)', async () => {
    answer = [ADDRS[0], 'fd00::2', ADDRS[1], 'fd00::3'];
    await boot();
    await waitFor(async () => Object.keys(await byName()).length === 2, 20_000, 'two backends');
    await new Promise((r) => setTimeout(r, 200));
    expect(Object.keys(await byName()).sort()).toEqual([name(ADDRS[0]), name(ADDRS[1])]);
  });

  it('a failed lookup keeps the fleet as it was; the next answer applies again', async () => {
    answer = [ADDRS[1], ADDRS[2]];
    await boot();
    await waitFor(async () => Object.keys(await byName()).length === 2, 20_000, 'two backends');
    answer = Object.assign(new Error('queryA ETIMEOUT ollama.test'), { code: 'ETIMEOUT' });
    const before = lookups;
    await waitFor(() => lookups >= before + 5, 10_000, 'five failed lookups');
    const kept = await byName();
    expect(Object.keys(kept).sort()).toEqual([name(ADDRS[1]), name(ADDRS[2])]);
    expect(Object.values(kept).every((b) => b.retiring === null)).toBe(true);
    expect((await generate('still')).status).toBe(200);

    answer = [ADDRS[2], ADDRS[0]];
    await waitFor(
      async () => {
        const b = await byName();
        return name(ADDRS[0]) in b && !(name(ADDRS[1]) in b);
      },
      10_000,
      'the new answer applied',
    );
  });

  it('an address that comes back while draining rejoins; with DISCOVERY_AGENT_PORT each backend gets its agent URL', async () => {
    answer = [ADDRS[0]];
    await boot({ DISCOVERY_AGENT_PORT: '9400' });
    await waitFor(async () => (await byName())[name(ADDRS[0])]?.health === 'healthy', 20_000, 'healthy');
    const st = (await getJson(`${url}/balancer/status`)).body.backends[0];
    expect(st.agent.url).toBe(`http://${ADDRS[0]}:9400`);
    // Keep one request in flight so the backend cannot be removed while retiring.
    let first = false;
    const stream = streamTimed(
      `${url}/api/generate`,
      { model, prompt: 'hold', options: { num_predict: 30 } },
      () => (first = true),
    );
    await waitFor(() => first, 15_000, 'stream under way');
    answer = [];
    await waitFor(async () => (await byName())[name(ADDRS[0])]?.retiring !== null, 10_000, 'retiring');
    answer = [ADDRS[0]];
    await waitFor(async () => (await byName())[name(ADDRS[0])]?.retiring === null, 10_000, 'back');
    expect((await stream).status).toBe(200);
    expect((await generate('after')).headers['x-balancer-backend']).toBe(name(ADDRS[0]));
  });

  it('a name in OLLAMA_BACKENDS_DNS is checked at start: an address or a bad port is refused naming the setting', () => {
    expect(() => loadBalancerConfig({ OLLAMA_BACKENDS_DNS: '10.0.0.5:11434' })).toThrow(
      'Invalid configuration: OLLAMA_BACKENDS_DNS="10.0.0.5:11434" 10.0.0.5 is an address, not a name',
    );
    expect(() => loadBalancerConfig({ OLLAMA_BACKENDS_DNS: 'ollama:99999' })).toThrow(
      'OLLAMA_BACKENDS_DNS="ollama:99999" has an entry that is not name:port',
    );
    expect(() => loadBalancerConfig({ OLLAMA_BACKENDS_DNS: 'ftp://ollama:21' })).toThrow(
      'entries must be name:port or http(s)://name:port',
    );
    expect(() => loadBalancerConfig({ DISCOVERY_INTERVAL_MS: '10' })).toThrow('DISCOVERY_INTERVAL_MS="10"');
    expect(() => loadBalancerConfig({ DISCOVERY_AGENT_PORT: '0' })).toThrow('DISCOVERY_AGENT_PORT="0"');
    expect(loadBalancerConfig({ OLLAMA_BACKENDS_DNS: 'ollama, https://gpu.example.com:8443' }).discovery.dns).toEqual([
      { host: 'ollama', port: 11434, protocol: 'http:' },
      { host: 'gpu.example.com', port: 8443, protocol: 'https:' },
    ]);
  });
});
