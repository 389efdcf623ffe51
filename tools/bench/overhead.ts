/** Overhead suite: the same simulated backend reached directly, through the balancer and through nginx. */
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { BenchContext, startBalancer, startSim } from './context';
import { LoadResult, runLoad } from './loadgen';
import { startNginx } from './peers';
import { Child, freePort, httpGet, rssBytes, runToEnd, sleep } from './procs';
import { ratio, Summary } from './stats';

export interface StreamResult {
  streams: number;
  errors: number;
  chunks: number;
  wallMs: number;
  ttfbMs: Summary;
  gapMs: Summary;
  transitMs: Summary;
}

export interface OverheadResult {
  loadGen: string;
  durationS: number;
  /** Median-throughput round per cell, and every round. */
  small: { concurrency: number; target: string; result: LoadResult; rounds: LoadResult[] }[];
  rounds: number;
  ratios: {
    concurrency: number;
    target: string;
    rpsVsDirect: number;
    rpsVsNginx: number;
    p50AddedMs: number;
    p99AddedMs: number;
  }[];
  /** One entry per number of concurrent streams. */
  streaming: {
    streams: number;
    chunkIntervalMs: number;
    outputTokens: number;
    results: { target: string; result: StreamResult }[];
    added: {
      target: string;
      ttfbP50Ms: number;
      ttfbP99Ms: number;
      gapP50Ms: number;
      gapP99Ms: number;
      transitP50Ms: number;
      transitP99Ms: number;
    }[];
    balancerRssBytes: { idle: number; peak: number };
  }[];
  balancerRssPeakUnderLoadBytes: number;
  skipped: string[];
}

const SMALL_BODY = JSON.stringify({ model: 'llama3.2', prompt: 'hi', stream: false, options: { num_predict: 1 } });

export async function runOverhead(ctx: BenchContext): Promise<OverheadResult> {
  const durationS = ctx.smoke ? 1 : 4;
  const roundsPerCell = ctx.smoke ? 1 : 3;
  const warmS = ctx.smoke ? 0 : 2;
  const streamLevels = ctx.smoke ? [50] : [100, 1000];
  const outputTokens = ctx.smoke ? 10 : 40;
  const chunkIntervalMs = 100;
  const skipped: string[] = [];
  const children: Child[] = [];
  try {
    const simPort = await freePort();
    const simCfg = join(ctx.tmp, 'overhead-sim.json');
    writeFileSync(
      simCfg,
      JSON.stringify({
        name: 'overhead',
        models: [{ name: 'llama3.2:latest', sizeBytes: 2_019_393_189 }],
        loaded: ['llama3.2:latest'],
        tokensPerSecond: 1_000_000,
        promptTokensPerSecond: 1_000_000_000,
        numParallel: 4096,
        maxQueue: 100_000,
        keepAliveMs: -1,
      }),
    );
    children.push(await startSim(ctx, 'overhead', simPort, simCfg));
    const balPort = await freePort();
    const balCfg = join(ctx.tmp, 'overhead-balancer.json');
    writeFileSync(
      balCfg,
      JSON.stringify({
        backends: [{ name: 'sim', url: `http://127.0.0.1:${simPort}`, parallel: 4096, maxLoadedModels: 3 }],
      }),
    );
    const balancer = await startBalancer(ctx, balPort, balCfg, { QUEUE_MAX: '100000' });
    children.push(balancer);
    const targets: { name: string; url: string }[] = [
      { name: 'direct', url: `http://127.0.0.1:${simPort}` },
      { name: 'balancer', url: `http://127.0.0.1:${balPort}` },
    ];
    if (ctx.hasNginx) {
      const ngPort = await freePort();
      children.push(
        await startNginx(join(ctx.tmp, 'nginx-overhead'), [
          { listen: ngPort, method: 'round-robin', servers: [{ name: 'sim', port: simPort }] },
        ]),
      );
      targets.push({ name: 'nginx', url: `http://127.0.0.1:${ngPort}` });
    } else skipped.push('nginx');

    // Sample the balancer's resident memory for the whole suite.
    let peakRss = 0;
    let phasePeak = 0;
    const sampler = setInterval(() => {
      const r = rssBytes(balancer.pid);
      if (r > peakRss) peakRss = r;
      if (r > phasePeak) phasePeak = r;
    }, 50);
    const idleRss = rssBytes(balancer.pid);

    // Rounds interleave the targets so a burst of outside load on this shared machine hits all of
    // them alike; each cell reports the round with the median throughput.
    const small: OverheadResult['small'] = [];
    for (const c of [1, 64]) {
      const rounds: Record<string, LoadResult[]> = {};
      for (const t of targets) {
        if (warmS > 0) await runLoad(ctx.loadGen, `${t.url}/api/generate`, SMALL_BODY, c, warmS, ctx.tmp);
        rounds[t.name] = [];
      }
      for (let round = 0; round < roundsPerCell; round++) {
        for (const t of targets) {
          ctx.log(`overhead: ${t.name} c=${c} round ${round + 1}/${roundsPerCell}, ${durationS}s (${ctx.loadGen})`);
          rounds[t.name].push(await runLoad(ctx.loadGen, `${t.url}/api/generate`, SMALL_BODY, c, durationS, ctx.tmp));
        }
      }
      for (const t of targets) {
        const sorted = [...rounds[t.name]].sort((a, b) => a.rps - b.rps);
        small.push({
          concurrency: c,
          target: t.name,
          result: sorted[Math.floor(sorted.length / 2)],
          rounds: rounds[t.name],
        });
      }
    }
    const ratios: OverheadResult['ratios'] = [];
    for (const s of small) {
      const d = small.find((x) => x.concurrency === s.concurrency && x.target === 'direct')!.result;
      const n = small.find((x) => x.concurrency === s.concurrency && x.target === 'nginx')?.result;
      ratios.push({
        concurrency: s.concurrency,
        target: s.target,
        rpsVsDirect: ratio(s.result.rps, d.rps),
        rpsVsNginx: n ? ratio(s.result.rps, n.rps) : NaN,
        p50AddedMs: s.result.p50Ms - d.p50Ms,
        p99AddedMs: s.result.p99Ms - d.p99Ms,
      });
    }

    // Streaming: slow the simulator to a fixed chunk rate, then N concurrent streams per target.
    await postJson(`http://127.0.0.1:${simPort}/_sim/config`, { tokensPerSecond: 1000 / chunkIntervalMs });
    const levels: OverheadResult['streaming'] = [];
    for (const streams of streamLevels) {
      const streamResults: { target: string; result: StreamResult }[] = [];
      let streamPeak = 0;
      for (const t of targets) {
        ctx.log(`overhead: ${streams} streams via ${t.name}`);
        phasePeak = 0;
        const job = join(ctx.tmp, `stream-${t.name}.json`);
        const out = join(ctx.tmp, `stream-${t.name}.out.json`);
        const timeoutMs = outputTokens * chunkIntervalMs * 4 + 30_000;
        writeFileSync(
          job,
          JSON.stringify({
            url: `${t.url}/api/chat`,
            streams,
            outputTokens,
            model: 'llama3.2',
            rampMs: ctx.smoke ? 200 : 1000,
            timeoutMs,
          }),
        );
        const r = await runToEnd(process.execPath, [join(__dirname, 'stream-client.js'), job, out], {
          timeoutMs: timeoutMs + 20_000,
        });
        if (r.code !== 0)
          throw new Error(`stream client for ${t.name} failed (exit ${r.code}): ${r.stderr.slice(-500)}`);
        streamResults.push({ target: t.name, result: JSON.parse(readFileSync(out, 'utf8')) });
        if (t.name === 'balancer') streamPeak = phasePeak;
        await sleep(500);
      }
      const direct = streamResults.find((s) => s.target === 'direct')!.result;
      const added = streamResults
        .filter((s) => s.target !== 'direct')
        .map((s) => ({
          target: s.target,
          ttfbP50Ms: s.result.ttfbMs.p50 - direct.ttfbMs.p50,
          ttfbP99Ms: s.result.ttfbMs.p99 - direct.ttfbMs.p99,
          gapP50Ms: s.result.gapMs.p50 - direct.gapMs.p50,
          gapP99Ms: s.result.gapMs.p99 - direct.gapMs.p99,
          transitP50Ms: s.result.transitMs.p50 - direct.transitMs.p50,
          transitP99Ms: s.result.transitMs.p99 - direct.transitMs.p99,
        }));
      levels.push({
        streams,
        chunkIntervalMs,
        outputTokens,
        results: streamResults,
        added,
        balancerRssBytes: { idle: idleRss, peak: streamPeak },
      });
    }
    clearInterval(sampler);
    return {
      loadGen: ctx.loadGen,
      durationS,
      small,
      rounds: roundsPerCell,
      ratios,
      streaming: levels,
      balancerRssPeakUnderLoadBytes: peakRss,
      skipped,
    };
  } finally {
    await Promise.all(children.reverse().map((c) => c.stop()));
  }
}

export async function postJson(url: string, body: unknown): Promise<void> {
  const { request } = await import('http');
  await new Promise<void>((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode && res.statusCode < 300 ? resolve() : reject(new Error(`${url}: HTTP ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

export { httpGet };
