import * as fc from 'fast-check';
import * as http from 'http';
import { normaliseModelName } from '../../libs/ollama-names/src';
import { describeCase, FuzzCase, fuzzCase } from './arbitraries';
import { BASE_MODELS, Fleet, getJson, getStatus } from './fleet';
import { exchange, WireOutcome, WireRequest, WireResponse } from './wire';

export interface Violation {
  kind:
    | 'crash'
    | 'runner'
    | 'hang'
    | 'status'
    | 'shape'
    | 'closed'
    | 'leak'
    | 'ejection'
    | 'inventory'
    | 'log'
    | 'liveness';
  detail: string;
}

/** Longest a single exchange may take (slow bodies included) before it counts as a hang. */
const EXCHANGE_TIMEOUT_MS = 20_000;
/** Longest in-flight and queue counts may take to return to zero after a case. */
const SETTLE_MS = 15_000;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** A JSON line as a strict parser (Go, serde) reads it: valid JSON, no lone surrogate in any string. */
export function strictJsonLine(line: string): boolean {
  let ok = true;
  try {
    JSON.parse(line, (_k, v) => {
      if (typeof v === 'string' && LONE_SURROGATE.test(v)) ok = false;
      return v;
    });
  } catch {
    return false;
  }
  return ok;
}

const METHODS = new Set(http.METHODS);

/**
 * Whether Node's parser refuses the request or what follows it (an unknown method, a raw byte in
 * the target, two Host headers, body bytes outside the declared framing).
 */
function nodeRejects(r: WireRequest): boolean {
  if (!METHODS.has(r.method)) return true;
  // A body sent with no length (or a shorter one declared) leaves bytes the server reads as the next request.
  if (r.body.length > 0 && !r.chunked && (r.lengthDelta === undefined || r.lengthDelta < 0)) return true;
  if (/[^\x21-\x7e]/.test(r.target)) return true;
  if (r.headers.filter(([k]) => k.toLowerCase() === 'host').length > 1) return true;
  return (
    r.headers.some(([, v]) => /[^\x20-\x7e\t]/.test(v) && !/[\x80-\xff]/.test(v)) ||
    r.headers.some(([k]) => !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k))
  );
}

/**
 * Whether a request asks to close the connection after its answer (a `close` token in a Connection
 * header, as llhttp reads it). RFC 9112 §9.6: a client that sends it MUST NOT send more requests
 * on that connection. Node's parser refuses any byte after it (HPE_CLOSED_CONNECTION, "Data after
 * `Connection: close`"): it answers 400 in place of the answers still owed and destroys the socket;
 * a client still sending then gets a reset, which may discard even that 400.
 */
function saysClose(r: WireRequest): boolean {
  return r.headers.some(
    ([k, v]) => k.toLowerCase() === 'connection' && v.split(',').some((t) => t.trim().toLowerCase() === 'close'),
  );
}

/**
 * Whether the balancer may answer this request (the i-th on its connection) with Connection: close
 * although the client did not ask for it: an Upgrade ends HTTP on its connection (Node reads
 * nothing after it), and Node closes after a final answer to a request that expected
 * 100-continue and got no 100 (the balancer invites no body from a GET or HEAD, nor from a request
 * queued behind another answer, where a 100 would land inside that answer).
 */
function closesAfterAnswer(r: WireRequest, i: number): boolean {
  if (r.headers.some(([k]) => k.toLowerCase() === 'upgrade')) return true;
  const expects100 = r.headers.some(
    ([k, v]) => k.toLowerCase() === 'expect' && /(?:^|\W)100-continue(?:$|\W)/i.test(v),
  );
  return expects100 && (r.method === 'GET' || r.method === 'HEAD' || i > 0);
}

/**
 * The models a case's DELETE /api/delete requests name (the model or name key, in any case, as Go
 * reads keys). A client that deletes a model and pulls it back within one case leaves the
 * balancer's view without it until the next inventory poll although the simulator holds it
 * again: that is the client's doing, not a model lost to a request.
 */
export function deletedBy(c: FuzzCase): Set<string> {
  const out = new Set<string>();
  for (const p of c.plans)
    for (const q of p.requests) {
      if (!/\/api\/delete/.test(q.target)) continue;
      let body: unknown;
      try {
        body = JSON.parse(q.body.toString('utf8'));
      } catch {
        continue;
      }
      if (body === null || typeof body !== 'object') continue;
      for (const [k, v] of Object.entries(body))
        if (/^(model|name)$/i.test(k) && typeof v === 'string' && v.trim() !== '') out.add(normaliseModelName(v));
    }
  return out;
}

/** Requests that may change what a backend holds. */
const MUTATING = /\/api\/(pull|push|create|copy|delete)/;

const header = (r: WireResponse, k: string) => r.headers[k]?.[0];

/** What is wrong with one answer, if anything. `backend5xx`: a backend itself answered 5xx in this case. */
export function judgeResponse(q: WireRequest, r: WireResponse, backend5xx: boolean): Violation | null {
  const where = `${q.method} ${q.target.slice(0, 120)} -> ${r.status}`;
  if (r.status === 0)
    return { kind: 'status', detail: `${where}: not an HTTP answer: ${r.body.subarray(0, 200).toString('latin1')}` };
  if (r.status >= 500 && r.status !== 503 && !backend5xx)
    return {
      kind: 'status',
      detail: `${where} for client input (no backend failed): ${r.body.subarray(0, 300).toString('utf8')}`,
    };
  if (q.method === 'HEAD' || r.body.length === 0) return null;
  const ct = header(r, 'content-type') ?? '';
  const proxied = header(r, 'x-balancer-backend') !== undefined;
  const text = r.body.toString('utf8');
  if (r.status >= 400 && !proxied) {
    if (!ct.includes('json'))
      return { kind: 'shape', detail: `${where}: an error that is not JSON (${ct}): ${text.slice(0, 200)}` };
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      return { kind: 'shape', detail: `${where}: an error body that does not parse: ${text.slice(0, 200)}` };
    }
    const openai = q.target.startsWith('/v1/');
    const e = body?.error;
    const ok = openai ? typeof e?.message === 'string' : typeof e === 'string';
    if (!ok)
      return {
        kind: 'shape',
        detail: `${where}: not the ${openai ? 'OpenAI' : 'Ollama'} error shape: ${text.slice(0, 200)}`,
      };
    return null;
  }
  if (ct.includes('ndjson')) {
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        JSON.parse(line);
      } catch {
        return { kind: 'shape', detail: `${where}: an NDJSON line that does not parse: ${line.slice(0, 200)}` };
      }
    }
  } else if (ct.includes('application/json')) {
    try {
      JSON.parse(text);
    } catch {
      return {
        kind: 'shape',
        detail: `${where}: a JSON answer that does not parse (${r.body.length} bytes): ${text.slice(0, 200)}`,
      };
    }
  }
  return null;
}

export function judgeOutcome(reqs: WireRequest[], o: WireOutcome, aborting: boolean, backend5xx: boolean): Violation[] {
  const out: Violation[] = [];
  // CONNECT takes the connection over (Node answers it at once, ahead of what was pipelined before
  // it): answers no longer line up with requests, so only their statuses are judged.
  const tunnel = reqs.some((r) => r.method.toUpperCase() === 'CONNECT') && reqs.length > 1;
  o.responses.forEach((r, i) => {
    if (tunnel) {
      if (r.status === 0 || (r.status >= 500 && r.status !== 503 && !backend5xx))
        out.push({ kind: 'status', detail: `pipelined with CONNECT -> ${r.status}` });
      return;
    }
    const v = judgeResponse(reqs[Math.min(i, reqs.length - 1)], r, backend5xx);
    if (v) out.push(v);
  });
  if (aborting || tunnel) return out;
  // A request Node cannot parse ends the connection (HTTP/1.1 lets a server close on a framing
  // error): answers still pending for requests pipelined before it are lost with it.
  // (With a body still arriving, the client may not even read that 400: the reset discards it.)
  // So does anything pipelined behind a request that said Connection: close.
  // Likewise a request whose Content-Length claims more than its body, with another pipelined
  // behind it: the missing bytes are taken from the next request, whose rest then does not parse.
  const unparsable =
    reqs.some(nodeRejects) || reqs.slice(0, -1).some((r) => saysClose(r) || (!r.chunked && (r.lengthDelta ?? 0) > 0));
  // An answer sent with Connection: close while the client still sends what it pipelined behind:
  // Node closes with those bytes unread, the kernel answers them with a reset, and the reset can
  // discard answers the client has not read yet, that one included. The close was announced; the
  // reset hid the announcement.
  // The last request too: refused before its body was read (401, say), its close resets the
  // connection while that body still arrives, and the answers before it go with the reset.
  const announcedClose = reqs.some((r, i) => saysClose(r) || closesAfterAnswer(r, i));
  const first = `${reqs[0].method} ${reqs[0].target.slice(0, 120)}`;
  if (o.end === 'timeout')
    out.push({
      kind: 'hang',
      detail: `${first}: ${o.responses.length} of ${reqs.length} answers after ${EXCHANGE_TIMEOUT_MS} ms`,
    });
  else if (o.end === 'closed' && o.responses.length < reqs.length && !unparsable && !announcedClose) {
    // Node itself ends a connection after refusing a request it cannot frame or whose Expect it
    // rejects (400, 408, 413, 417, 431): the requests pipelined behind it are then unanswered.
    const closing = o.responses.some(
      (r) => (header(r, 'connection') ?? '').toLowerCase() === 'close' || [400, 408, 413, 417, 431].includes(r.status),
    );
    if (!closing)
      out.push({
        kind: 'closed',
        detail: `${first}: the connection closed after ${o.responses.length} of ${reqs.length} answers, none saying Connection: close`,
      });
  }
  return out;
}

const names = (st: any): string[][] => st.backends.map((b: any) => [...b.models].sort());

async function simTags(url: string): Promise<Set<string>> {
  const r = await getJson(`${url}/api/tags`);
  return new Set((r.body.models ?? []).map((m: any) => m.name as string));
}

/**
 * Runs cases against one fleet and checks, after each, that the process lives and answers
 * /health/live, every answer was valid, counts returned to zero, no backend was ejected and no
 * model fell out of the balancer's inventory while its backend still holds it.
 */
export class FuzzRunner {
  private ejections = 0;
  private before: any = null;
  private logOffset = 0;
  cases = 0;
  requests = 0;

  constructor(readonly fleet: Fleet) {}

  async init(): Promise<void> {
    this.before = await getStatus(this.fleet.url);
    this.ejections = this.before.counters.ejections;
    this.logOffset = this.fleet.stdout().length;
  }

  private async backend5xx(): Promise<number> {
    let n = 0;
    for (const s of this.fleet.sims)
      for (const [code, c] of Object.entries(s.stats().errorsByStatus)) if (Number(code) >= 500) n += c;
    return n;
  }

  async run(c: FuzzCase): Promise<Violation[]> {
    this.cases++;
    const fiveBefore = await this.backend5xx();
    const outcomes = await Promise.all(c.plans.map((p) => exchange(this.fleet.port, p, EXCHANGE_TIMEOUT_MS)));
    this.requests += c.plans.reduce((n, p) => n + p.requests.length, 0);
    const v: Violation[] = [];
    const fiveAfter = await this.backend5xx();
    c.plans.forEach((p, i) =>
      v.push(...judgeOutcome(p.requests, outcomes[i], p.abortAfterMs !== undefined, fiveAfter > fiveBefore)),
    );
    if (!this.fleet.alive()) {
      v.push({
        kind: 'crash',
        detail: `the balancer exited (${this.fleet.proc.exitCode ?? this.fleet.proc.signalCode}):\n${this.fleet.stderr().slice(-2000)}\n${this.fleet.stdout().slice(-2000)}`,
      });
      return v;
    }
    const live = await getJson(`${this.fleet.url}/health/live`).catch((e: Error) => ({ status: 0, body: e.message }));
    if (live.status !== 200)
      v.push({
        kind: 'liveness',
        detail: `/health/live answered ${live.status}: ${JSON.stringify(live.body).slice(0, 200)}`,
      });
    // Counts back to zero.
    let st: any = null;
    let lastStatus = '';
    const deadline = Date.now() + SETTLE_MS;
    for (;;) {
      const got = await getStatus(this.fleet.url).catch((e: Error) => ({ error: e.message }));
      // Anything but a status view (an error answer, a timeout) is retried until the deadline.
      st = got && typeof got.queue?.length === 'number' && Array.isArray(got.backends) ? got : null;
      if (st === null) lastStatus = JSON.stringify(got).slice(0, 300);
      const idle =
        st &&
        st.queue.length === 0 &&
        st.backends.every((b: any) => b.inFlight === 0 && Object.keys(b.inFlightByModel).length === 0);
      if (idle) break;
      if (Date.now() > deadline) {
        v.push({
          kind: 'leak',
          detail: `in-flight or queue counts not back to zero after ${SETTLE_MS} ms: ${st ? JSON.stringify({ queue: st.queue.length, inFlight: st.backends.map((b: any) => b.inFlightByModel) }) : `no status view (${lastStatus})`}`,
        });
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    if (st) {
      if (
        st.counters.ejections !== this.ejections ||
        st.backends.some((b: any) => b.ejected || b.health !== 'healthy')
      ) {
        v.push({
          kind: 'ejection',
          detail: `a backend was ejected or marked down: ${JSON.stringify(st.backends.map((b: any) => ({ name: b.name, health: b.health, ejected: b.ejected, lastError: b.lastError })))}; events ${JSON.stringify(st.events.slice(0, 3))}`,
        });
        this.ejections = st.counters.ejections;
      }
      // A model gone from the balancer's view: only a defect if its backend still holds it.
      const deleted = deletedBy(c);
      const was = names(this.before);
      const now = names(st);
      for (let i = 0; i < now.length; i++) {
        const gone = was[i].filter((m) => !now[i].includes(m));
        if (gone.length === 0) continue;
        const held = await simTags(this.fleet.sims[i].url);
        const wrongly = gone.filter((m) => held.has(m) && !deleted.has(m));
        if (wrongly.length > 0)
          v.push({
            kind: 'inventory',
            detail: `backend b${i + 1} lost ${wrongly.join(', ')} from the balancer's inventory though it still holds them`,
          });
      }
      this.before = st;
    }
    // Every log line a strict JSON parser accepts.
    const out = this.fleet.stdout();
    const end = out.lastIndexOf('\n') + 1;
    if (end > this.logOffset) {
      for (const line of out.slice(this.logOffset, end).split('\n')) {
        if (line.trim() !== '' && !strictJsonLine(line))
          v.push({ kind: 'log', detail: `a log line strict JSON parsers reject: ${line.slice(0, 300)}` });
      }
      this.logOffset = end;
    }
    // A client may legitimately change what the backends hold (MODEL_MANAGEMENT=open): put it back.
    // (Whatever the answers said: a delete may have happened although its answer was lost.)
    if (c.plans.some((p) => p.requests.some((q) => MUTATING.test(q.target)))) await this.restore();
    return v;
  }

  /**
   * Puts the simulators back as they started when a case changed what a backend holds (a client
   * may delete, copy, create or pull). The balancer's view catches up at its next inventory poll;
   * nothing waits for it: the inventory check compares each case's before and after, and a model
   * the simulator no longer holds may leave the view at any time.
   */
  private async restore(): Promise<void> {
    for (let i = 0; i < this.fleet.sims.length; i++) {
      const held = await simTags(this.fleet.sims[i].url);
      const base = BASE_MODELS[i].map((m) => m.name);
      if (held.size !== base.length || base.some((m) => !held.has(m)))
        await this.fleet.sims[i].update({ models: BASE_MODELS[i] });
    }
  }
}

export interface CampaignFailure {
  seed: number;
  case: string;
  violations: Violation[];
}

/**
 * fast-check drives the runner: `numRuns` cases from `seed`. The first violation ends the run
 * (no shrinking: every case costs real requests) and is returned with the case that caused it.
 */
export async function fuzzRun(
  runner: FuzzRunner,
  seed: number,
  numRuns: number,
  onCase?: () => void,
): Promise<CampaignFailure | null> {
  let failure: CampaignFailure | null = null;
  const result = await fc.check(
    fc.asyncProperty(fuzzCase, async (c) => {
      const v = await runner.run(c);
      onCase?.();
      if (v.length > 0) {
        failure = { seed, case: describeCase(c), violations: v };
        return false;
      }
      return true;
    }),
    { seed, numRuns, endOnFailure: true },
  );
  if (result.failed && failure === null)
    failure = {
      seed,
      case: String(result.counterexample?.[0] ? describeCase(result.counterexample[0]) : '?'),
      // The runner itself threw (not the balancer): reported as such, with its stack.
      violations: [
        {
          kind: 'runner',
          detail: String((result.errorInstance as Error)?.stack ?? result.errorInstance ?? 'the property threw'),
        },
      ],
    };
  return failure;
}
