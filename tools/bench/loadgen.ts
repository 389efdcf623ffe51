/** Closed-loop HTTP load: wrk when installed, else autocannon; always in its own process. */
import { writeFileSync } from 'fs';
import { join } from 'path';
import { runToEnd, which } from './procs';

export type LoadGenName = 'wrk' | 'autocannon';

export interface LoadResult {
  requests: number;
  durationS: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
}

export function pickLoadGen(): LoadGenName {
  return which('wrk') ? 'wrk' : 'autocannon';
}

const WRK_SCRIPT = (body: string): string => `wrk.method = "POST"
wrk.body = ${JSON.stringify(body)}
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nBENCH_JSON {"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
`;

export async function runLoad(
  gen: LoadGenName,
  url: string,
  body: string,
  connections: number,
  durationS: number,
  tmpDir: string,
): Promise<LoadResult> {
  if (gen === 'wrk') {
    const script = join(tmpDir, 'post.lua');
    writeFileSync(script, WRK_SCRIPT(body));
    const r = await runToEnd(
      which('wrk')!,
      ['-t1', `-c${connections}`, `-d${durationS}s`, '--timeout', '10s', '-s', script, url],
      { timeoutMs: (durationS + 30) * 1000 },
    );
    const line = r.stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '));
    if (!line)
      throw new Error(`wrk produced no result (exit ${r.code}): ${r.stdout.slice(-500)} ${r.stderr.slice(-500)}`);
    const j = JSON.parse(line.slice('BENCH_JSON '.length));
    const durationSec = j.durationUs / 1e6;
    return {
      requests: j.requests,
      durationS: durationSec,
      rps: j.requests / durationSec,
      p50Ms: j.p50Us / 1000,
      p99Ms: j.p99Us / 1000,
      errors: j.connect + j.read + j.write + j.timeout,
      non2xx: j.status,
    };
  }
  const bin = require.resolve('autocannon/autocannon.js');
  const r = await runToEnd(
    process.execPath,
    [
      bin,
      '--json',
      '-c',
      String(connections),
      '-d',
      String(durationS),
      '-m',
      'POST',
      '-H',
      'content-type=application/json',
      '-b',
      body,
      url,
    ],
    { timeoutMs: (durationS + 30) * 1000 },
  );
  let j: any;
  try {
    j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
  } catch {
    throw new Error(`autocannon produced no JSON (exit ${r.code}): ${r.stderr.slice(-500)}`);
  }
  const durationSec = j.duration;
  const total = j.requests.total;
  return {
    requests: total,
    durationS: durationSec,
    rps: total / durationSec,
    p50Ms: j.latency.p50,
    p99Ms: j.latency.p99,
    errors: j.errors + j.timeouts,
    non2xx: j.non2xx,
  };
}
