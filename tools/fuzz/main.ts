/**
 * The long fuzz campaign: `npm run fuzz -- --cases N [--seed S] [--chunk C] [--out FILE]`.
 * Starts the built balancer (dist/) in front of two simulated Ollama servers, runs N fast-check
 * cases against it in chunks of C (each chunk its own seed: S, S+1, ...), and reports every
 * violation with its seed and case. A crashed balancer is restarted and the campaign goes on.
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

async function main(): Promise<void> {
  const cases = arg('cases', 1000);
  const seed = arg('seed', Date.now() % 2 ** 31);
  const chunk = Math.max(1, arg('chunk', 2000));
  const outIdx = process.argv.indexOf('--out');
  const outFile = outIdx >= 0 ? process.argv[outIdx + 1] : undefined;
  const started = Date.now();
  let fleet: Fleet = await startFleet();
  let runner = new FuzzRunner(fleet);
  await runner.init();
  const failures: CampaignFailure[] = [];
  const seeds: number[] = [];
  let done = 0;
  let requests = 0;
  let crashes = 0;
  const summary = () => ({
    cases: done,
    requests: requests + runner.requests,
    seeds,
    crashes,
    violations: failures.length,
    seconds: Math.round((Date.now() - started) / 1000),
    failures,
  });
  const stop = async (code: number) => {
    const s = summary();
    const text = JSON.stringify(s, null, 2);
    if (outFile) writeFileSync(outFile, text);
    console.log(text);
    await fleet.stop().catch(() => undefined);
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(130));
  process.on('SIGTERM', () => void stop(143));
  let lastReport = Date.now();
  for (let k = 0; done < cases; k++) {
    const s = seed + k;
    const n = Math.min(chunk, cases - done);
    seeds.push(s);
    const before = runner.cases;
    const failure = await fuzzRun(runner, s, n, () => {
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now();
        console.error(
          `fuzz: ${done + runner.cases - before} cases, ${failures.length} violations, ${Math.round((Date.now() - started) / 1000)} s`,
        );
      }
    });
    done += runner.cases - before;
    if (failure) {
      failures.push(failure);
      console.error(
        `fuzz: seed ${s}: ${failure.violations.map((v) => `${v.kind}: ${v.detail.slice(0, 300)}`).join('\n  ')}\n  case: ${failure.case.slice(0, 1000)}`,
      );
      if (failure.violations.some((v) => v.kind === 'crash')) crashes++;
      if (!fleet.alive() || failure.violations.some((v) => v.kind === 'crash' || v.kind === 'liveness')) {
        requests += runner.requests;
        await fleet.stop();
        fleet = await startFleet();
        runner = new FuzzRunner(fleet);
      }
      await runner.init();
    }
  }
  await stop(failures.length === 0 ? 0 : 1);
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});
