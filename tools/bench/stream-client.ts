/**
 * Streaming probe, run as its own process: opens N concurrent /api/chat streams, timestamps every
 * NDJSON line and reports TTFB, inter-chunk gaps and per-chunk transit delay (arrival minus the
 * simulator's created_at stamp; same machine clock, 1 ms resolution).
 * Usage: node stream-client.js <job.json> <out.json>
 */
import { readFileSync, writeFileSync } from 'fs';
import * as http from 'http';
import { summarize } from './stats';

interface Job {
  url: string;
  streams: number;
  outputTokens: number;
  model: string;
  /** Spread the opening of streams over this many ms (avoids a SYN burst). */
  rampMs: number;
  timeoutMs: number;
}

function main(): void {
  const job: Job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  const out = process.argv[3];
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const u = new URL(job.url);
  const ttfb: number[] = [];
  const gaps: number[] = [];
  const transit: number[] = [];
  let errors = 0;
  let done = 0;
  let chunks = 0;
  const body = JSON.stringify({
    model: job.model,
    messages: [{ role: 'user', content: 'stream please' }],
    stream: true,
    options: { num_predict: job.outputTokens },
  });
  const t0 = performance.now();
  const finish = (): void => {
    if (++done < job.streams) return;
    const result = {
      streams: job.streams,
      errors,
      chunks,
      wallMs: performance.now() - t0,
      ttfbMs: summarize(ttfb),
      gapMs: summarize(gaps),
      transitMs: summarize(transit),
    };
    writeFileSync(out, JSON.stringify(result));
    process.exit(0);
  };
  const open = (k: number): void => {
    const start = performance.now();
    let last = 0;
    let carry = '';
    let failed = false;
    const fail = (): void => {
      if (failed) return;
      failed = true;
      errors++;
      finish();
    };
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'x-session-id': `stream-${k}`,
        },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return fail();
        }
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          const now = performance.now();
          const wall = Date.now();
          if (last === 0) ttfb.push(now - start);
          carry += d;
          let nl: number;
          while ((nl = carry.indexOf('\n')) !== -1) {
            const line = carry.slice(0, nl);
            carry = carry.slice(nl + 1);
            if (!line) continue;
            chunks++;
            if (last !== 0) gaps.push(now - last);
            last = now;
            const m = /"created_at":"([^"]+)"/.exec(line);
            if (m) transit.push(wall - Date.parse(m[1]));
          }
          if (last === 0) last = now;
        });
        res.on('end', () => {
          if (!failed) finish();
        });
        res.on('error', fail);
      },
    );
    req.setTimeout(job.timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', fail);
    req.end(body);
  };
  for (let k = 0; k < job.streams; k++) {
    const delay = job.streams > 1 ? (job.rampMs * k) / job.streams : 0;
    setTimeout(() => open(k), delay);
  }
  setTimeout(
    () => {
      process.stderr.write(`stream-client: gave up with ${job.streams - done} streams open\n`);
      errors += job.streams - done;
      done = job.streams - 1;
      finish();
    },
    job.timeoutMs + job.rampMs + 5000,
  ).unref();
}

main();
