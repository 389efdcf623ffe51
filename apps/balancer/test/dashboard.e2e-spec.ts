/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core against a small demo
 * cluster — two simulated Ollama servers that write fake-NVML state files, a gpu-agent beside each
 * (child processes: the fake libnvidia-ml.so.1 reads FAKE_NVML_STATE from the process environment,
 * so two agents cannot share one process), and the real balancer behind an admin token. It checks
 * that backends and GPU readings appear, that in-flight and utilization move with load and settle
 * after it, and takes a screenshot: into docs/screenshots/dashboard.png (the one the README shows)
 * only with UPDATE_SCREENSHOTS=1, else into a temporary folder, so a test run leaves the tree as it
 * was.
 */
import { INestApplication } from '@nestjs/common';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import type { Browser, Page } from 'playwright-core';
import { startSimServer, SimServer } from '@app/ollama-sim';
import {
  AgentProcess,
  getJson,
  request,
  sleep,
  startAgent,
  startBalancer,
  streamTimed,
  waitFor,
  writeConfigFile,
} from './harness';

/** The page's DOM, inside page.waitForFunction callbacks (they run in the browser). */
declare const document: any;

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ROOT = resolve(__dirname, '../../..');
const UPDATE_SCREENSHOTS = process.env.UPDATE_SCREENSHOTS === '1';
const TOKEN = 'dashboard-e2e-admin-token';
const GiB = 1024 ** 3;
const model = 'llama3.2';

describe('dashboard in Chromium (playwright-core) over a live demo cluster', () => {
  let dir: string;
  let sims: SimServer[] = [];
  const agents: AgentProcess[] = [];
  let app: INestApplication | undefined;
  let url: string;
  let browser: Browser | undefined;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium not found at ${CHROMIUM}: npm test installs it (scripts/ensure-chromium.sh, Debian's chromium with apt-get); with npx jest, run that script once.`,
      );
    }
    dir = mkdtempSync(join(tmpdir(), 'dashboard-e2e-'));
    const gpuSets = [
      [
        {
          name: 'NVIDIA H100 80GB HBM3',
          uuid: 'GPU-aaaaaaaa-0000-0000-0000-000000000001',
          memTotalBytes: 80 * GiB,
          powerLimitW: 700,
        },
      ],
      [
        {
          name: 'NVIDIA L40S',
          uuid: 'GPU-bbbbbbbb-0000-0000-0000-000000000001',
          memTotalBytes: 48 * GiB,
          powerLimitW: 350,
        },
        {
          name: 'NVIDIA L40S',
          uuid: 'GPU-bbbbbbbb-0000-0000-0000-000000000002',
          memTotalBytes: 48 * GiB,
          powerLimitW: 350,
        },
      ],
    ];
    sims = await Promise.all(
      gpuSets.map((gpus, i) =>
        startSimServer({
          name: `gpu-node-${i + 1}`,
          port: 0,
          tokensPerSecond: 25,
          numParallel: 4,
          loaded: ['llama3.2:latest'],
          nvml: { statePath: join(dir, `nvml-${i + 1}.state`), gpus, throttleMs: 50 },
        }),
      ),
    );
    for (let i = 0; i < sims.length; i++)
      agents.push(await startAgent(`gpu-node-${i + 1}`, join(dir, `nvml-${i + 1}.state`), sims[i].url));
    const file = writeConfigFile({
      backends: sims.map((s, i) => ({ name: `gpu-node-${i + 1}`, url: s.url, parallel: 4, agentUrl: agents[i].url })),
    });
    ({ app, url } = await startBalancer({
      BALANCER_CONFIG: file,
      ADMIN_TOKEN: TOKEN,
      AGENT_INTERVAL_MS: '150',
      AGENT_STALE_MS: '5000',
      ROUTING_POLICY: 'least-loaded',
    }));
    const auth = { authorization: `Bearer ${TOKEN}` };
    await waitFor(
      async () => {
        const st = await getJson(`${url}/balancer/status`, auth);
        return st.body.backends.every((b: any) => b.health === 'healthy' && b.agent?.fresh && b.agent.gpus.length > 0);
      },
      20_000,
      'backends healthy with fresh GPU readings',
    );

    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-dev-shm-usage',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1480, height: 1100 }, deviceScaleFactor: 1 });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
  }, 90_000);

  afterAll(async () => {
    // The app closes while the page still holds its event stream open: close must not hang on it.
    await app?.close();
    await browser?.close();
    for (const a of agents) a.proc.kill('SIGTERM');
    await Promise.all(sims.map((s) => s.close()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const text = (sel: string) => page.locator(sel).first().innerText();
  const updates = async () => Number(await page.getAttribute('body', 'data-updates'));

  it('is behind the admin token, and carries ?token= on to its live feed', async () => {
    expect((await request(`${url}/balancer/dashboard`)).status).toBe(401);
    expect((await request(`${url}/balancer/events`)).status).toBe(401);
    const ok = await request(`${url}/balancer/dashboard?token=${TOKEN}`);
    expect(ok.status).toBe(200);
    expect(ok.headers['content-type']).toContain('text/html');
    expect(ok.text).not.toContain(TOKEN);
  });

  it('shows every backend with GPU readings, follows load live, and takes the screenshot', async () => {
    await page.goto(`${url}/balancer/dashboard?token=${TOKEN}`);
    await page.waitForFunction(() => Number(document.body.dataset.updates) >= 2, undefined, { timeout: 15_000 });
    // Every backend, healthy, with its GPUs from its own agent.
    for (const name of ['gpu-node-1', 'gpu-node-2']) {
      const card = `[data-backend="${name}"]`;
      expect(await page.locator(card).count()).toBe(1);
      expect(await text(`${card} [data-k="health"]`)).toBe('healthy');
      expect(await text(`${card} [data-k="inflight"]`)).toBe('0');
    }
    expect(await page.locator('[data-backend="gpu-node-1"] [data-gpu]').count()).toBe(1);
    expect(await page.locator('[data-backend="gpu-node-2"] [data-gpu]').count()).toBe(2);
    expect(await text('[data-backend="gpu-node-1"] [data-gpu="0"] .gname')).toContain('H100');
    expect(await text('[data-backend="gpu-node-2"] [data-gpu="1"] .gname')).toContain('L40S');
    expect(await text('[data-backend="gpu-node-1"] [data-gpu="0"] [data-k="util"]')).toBe('0%');
    expect(await text('[data-backend="gpu-node-1"] [data-gpu="0"] [data-k="mem"]')).toMatch(/\/ 80 GiB$/);
    expect(await text('[data-backend="gpu-node-2"] [data-gpu="0"] [data-k="mem"]')).toMatch(/\/ 48 GiB$/);
    expect(await text('[data-backend="gpu-node-1"] [data-gpu="0"] [data-k="power"]')).toMatch(/^\d+ W \/ 700 W$/);
    expect(await text('[data-backend="gpu-node-1"] [data-gpu="0"] [data-k="temp"]')).toMatch(/^\d+ °C$/);
    expect(await text('#matrix')).toContain('llama3.2:latest');
    const idlePower = parseInt(await text('[data-backend="gpu-node-1"] [data-gpu="0"] [data-k="power"]'), 10);

    // Load: a warm-up trickle, then a wave of concurrent streamed chats on both backends.
    const streams: Promise<unknown>[] = [];
    const chat = (i: number, n: number) =>
      streamTimed(`${url}/api/chat`, {
        model,
        messages: [{ role: 'user', content: `question ${i}` }],
        options: { num_predict: n },
      }).then((r) => expect(r.status).toBe(200));
    for (let i = 0; i < 12; i++) {
      streams.push(chat(i, 4 + (i % 4) * 4));
      await sleep(300);
    }
    for (let i = 0; i < 8; i++) streams.push(chat(100 + i, 120));

    // The page (not the API) shows the load: requests in flight and GPUs busy, hotter, drawing more power.
    await page.waitForFunction(
      () => {
        const v = (sel: string) => parseInt(document.querySelector(sel)?.textContent ?? '0', 10);
        return (
          v('[data-backend="gpu-node-1"] [data-k="inflight"]') >= 2 &&
          v('[data-backend="gpu-node-2"] [data-k="inflight"]') >= 2 &&
          v('[data-backend="gpu-node-1"] [data-gpu="0"] [data-k="util"]') >= 50 &&
          v('[data-backend="gpu-node-2"] [data-gpu="1"] [data-k="util"]') >= 50
        );
      },
      undefined,
      { timeout: 15_000 },
    );
    expect(parseInt(await text('[data-backend="gpu-node-1"] [data-gpu="0"] [data-k="power"]'), 10)).toBeGreaterThan(
      idlePower,
    );
    expect(await page.locator('#decisions tr[data-decision]').count()).toBeGreaterThanOrEqual(8);
    expect(Number(await text('#kInflight'))).toBeGreaterThanOrEqual(4);

    // Let the charts gather a few slots of traffic, then take the picture the README shows.
    const before = await updates();
    await page.waitForFunction((n) => Number(document.body.dataset.updates) >= n + 2, before, { timeout: 10_000 });
    const shots = UPDATE_SCREENSHOTS ? join(ROOT, 'docs/screenshots') : dir;
    mkdirSync(shots, { recursive: true });
    const screenshot = join(shots, 'dashboard.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    expect(statSync(screenshot).size).toBeGreaterThan(10_000);

    // When the load ends the page settles back: nothing in flight, GPUs idle.
    await Promise.all(streams);
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('[data-k="inflight"]')].every((e: any) => e.textContent === '0') &&
        [...document.querySelectorAll('[data-k="util"]')].every((e: any) => e.textContent === '0%'),
      undefined,
      { timeout: 15_000 },
    );
    expect(
      Number(await text('[data-backend="gpu-node-1"] [data-k="served"]')) +
        Number(await text('[data-backend="gpu-node-2"] [data-k="served"]')),
    ).toBe(20);
    expect(pageErrors).toEqual([]);
  });
});
