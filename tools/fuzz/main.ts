/**
 * The long fuzz campaign:
 * `npm run fuzz -- --cases N [--seed S] [--chunk C] [--fleets F] [--out FILE]`.
 * Runs N fast-check cases in chunks of C (chunk k has seed S+k) against F independent fleets at
 * once, each the built balancer (dist/) in front of two simulated Ollama servers of its own: a
 * case waits mostly on the network and the balancer's timers, so fleets side by side multiply the
 * rate while every case still runs alone against its fleet and is judged exactly as with one.
 * Every violation is reported with its seed and case; `--seed s --cases n --chunk n --fleets 1`
 * replays chunk s alone. A crashed balancer is restarted and the campaign goes on.
 */
import { writeFileSync } from 'fs';
import { startFleet, Fleet } from './fleet';
import { CampaignFailure, fuzzRun, FuzzRunner } from './run';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${name} must be a non-negative integer, got ${process.argv[i + 1]}`);
    process.exit(2);
  }
  return v;
}

/** One chunk as it ran: its seed, the fleet that ran it, how many cases, and its violation if any. */
interface ChunkResult {
  seed: number;
  fleet: number;
  cases: number;
  seconds: number;
  violation: boolean;
}

async function main(): Promise<void> {
  const cases = arg('cases', 1000);
  const seed = arg('seed', Date.now() % 2 ** 31);
  const chunk = Math.max(1, arg('chunk', 2000));
  const fleets = Math.max(1, arg('fleets', 1));
  const outIdx = process.argv.indexOf('--out');
  const outFile = outIdx >= 0 ? process.argv[outIdx + 1] : undefined;
  const started = Date.now();
  const failures: CampaignFailure[] = [];
  const chunks: ChunkResult[] = [];
  const workers: { fleet: Fleet | null; runner: FuzzRunner | null; requests: number; chunkStart: number }[] = [];
  let done = 0;
  /** Cases handed to a chunk and not yet given back (a chunk that stops at a violation gives back the rest). */
  let reserved = 0;
  let nextChunk = 0;
  let crashes = 0;
  const summary = () => ({
    cases: done,
    requests: workers.reduce((n, w) => n + w.requests + (w.runner?.requests ?? 0), 0),
    fleets,
    seeds: chunks.map((c) => c.seed).sort((a, b) => a - b),
    chunks,
    crashes,
    violations: failures.length,
    seconds: Math.round((Date.now() - started) / 1000),
    casesPerSecond: Math.round((done / Math.max(1, Date.now() - started)) * 1e4) / 10,
    failures,
  });
  let stopping = false;
  const stop = async (code: number) => {
    // Cases still running when the fleets are killed fail for that reason alone: not reported.
    stopping = true;
    const s = summary();
    const text = JSON.stringify(s, null, 2);
    if (outFile) writeFileSync(outFile, text);
    console.log(text);
    await Promise.all(workers.map((w) => w.fleet?.stop().catch(() => undefined)));
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(130));
  process.on('SIGTERM', () => void stop(143));
  let lastReport = Date.now();
  const progress = () => {
    if (Date.now() - lastReport < 30_000) return;
    lastReport = Date.now();
    const running = workers.reduce((n, w) => n + (w.runner ? w.runner.cases - w.chunkStart : 0), 0);
    console.error(
      `fuzz: ${done + running} cases, ${failures.length} violations, ${Math.round((Date.now() - started) / 1000)} s`,
    );
  };

  const work = async (index: number): Promise<void> => {
    const w = workers[index];
    w.fleet = await startFleet();
    w.runner = new FuzzRunner(w.fleet);
    await w.runner.init();
    while (reserved < cases) {
      const s = seed + nextChunk++;
      const n = Math.min(chunk, cases - reserved);
      reserved += n;
      const t0 = Date.now();
      const before = w.runner.cases;
      w.chunkStart = before;
      const failure = await fuzzRun(w.runner, s, n, progress);
      const ran = w.runner.cases - before;
      done += ran;
      w.chunkStart = w.runner.cases;
      reserved -= n - ran;
      chunks.push({
        seed: s,
        fleet: index,
        cases: ran,
        seconds: Math.round((Date.now() - t0) / 1000),
        violation: !!failure,
      });
      if (stopping) return;
      if (!failure) continue;
      failures.push(failure);
      console.error(
        `fuzz: seed ${s} (fleet ${index}, case index ${ran - 1} in the chunk): ${failure.violations.map((v) => `${v.kind}: ${v.detail.slice(0, 300)}`).join('\n  ')}\n  case: ${failure.case.slice(0, 1000)}`,
      );
      if (failure.violations.some((v) => v.kind === 'crash')) crashes++;
      if (!w.fleet.alive() || failure.violations.some((v) => v.kind === 'crash' || v.kind === 'liveness')) {
        w.requests += w.runner.requests;
        await w.fleet.stop();
        w.fleet = await startFleet();
        w.runner = new FuzzRunner(w.fleet);
        w.chunkStart = 0;
      }
      await w.runner.init();
    }
  };
  for (let i = 0; i < fleets; i++) workers.push({ fleet: null, runner: null, requests: 0, chunkStart: 0 });
  await Promise.all(workers.map((_, i) => work(i)));
  await stop(failures.length === 0 ? 0 : 1);
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});
