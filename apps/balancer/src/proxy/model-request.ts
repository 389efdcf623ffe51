import type { IncomingMessage, ServerResponse } from 'http';
import { isPageNotFound, PAGE_NOT_FOUND, type Backend, type RunnerOptions } from '../fleet/backend';
import type { ModelInventory } from '../fleet/model-inventory';
import type { OutlierDetection } from '../fleet/outlier-detection';
import type { OutputLengths } from '../fleet/output-lengths';
import { normaliseModelName } from '../config/balancer-config';
import { midStreamError, sendError } from '../http/errors';
import type { Lease } from '../routing/lease-ledger';
import type { NoCandidate } from '../routing/placement';
import type { QueuedRequest } from '../routing/placement-queue';
import type { RouteRequest } from '../routing/policies';
import type { QueueIdentity } from '../routing/priority-class';
import type { ResumeBudget } from '../routing/resume-budget';
import type { RetryBudget } from '../routing/retry-budget';
import type { RoutingService } from '../routing/routing.service';
import type { RequestRecord, RequestRecords } from './request-records';
import { responseHeaders } from './response-headers';
import { continuationBody, DeliveredStream, readDelivered, ResumeSurface, StreamSplicer } from './stream-resume';
import { AttemptContext, AttemptOwner, ProxyTarget, UpstreamAttempt } from './upstream-attempt';

/** What every model request of an app shares. */
export interface ModelRequestServices {
  readonly routing: RoutingService;
  readonly retryBudget: RetryBudget;
  readonly outliers: OutlierDetection;
  readonly inventory: ModelInventory;
  /** Each model's usual output length (fleet-wide): what a request's bound is expected to come to. */
  readonly outputLengths: OutputLengths;
  readonly records: RequestRecords;
  readonly upstream: AttemptContext & { targetOf(b: Backend): ProxyTarget };
  readonly retryMaxAttempts: number;
  readonly resumeBudget: ResumeBudget;
  /** At most this many resumes per request (STREAM_RESUME_MAX). */
  readonly resumeMax: number;
  /** One line per resume. */
  readonly log: { warn(message: string): void };
  /** Model requests not yet answered in full (what a drain waits for). */
  readonly open: Set<ModelRequest>;
}

/** What the proxy read from the request before handing it over. */
export interface ModelRequestInit {
  kind: 'model' | 'push';
  /** Normalised name (`llama3.2:latest`), and as the client wrote it. */
  model: string;
  displayModel: string;
  /** Its class, key and weight in the placement queue. */
  queue: QueueIdentity;
  body: Buffer;
  sessionKey: string | null;
  /** The most output tokens it asked for (num_predict, max_tokens...): an upper bound; null when none. */
  outputBound: number | null;
  /** It continues a conversation (its prompt likely cached where the conversation ran). */
  continuesConversation: boolean;
  /** The runner options it names (a difference from the loaded runner's reloads the model). */
  runnerOptions?: RunnerOptions;
  /** The request's keep_alive in ms (-1 forever), when it gave one Ollama would accept. */
  keepAliveMs: number | undefined;
  /** What the model must be able to do on the backend (tools, thinking, vision). */
  capabilities: readonly string[];
  /** The request's path (a backend lacking the route is no candidate). */
  path: string;
  streamed: boolean;
  /** When a broken stream may be resumed: its wire format and the parsed request (else null). */
  resume?: { surface: ResumeSurface; request: Record<string, any> } | null;
  requestId: string;
  startedAt: number;
  record: RequestRecord;
}

/** The last few chunks of a relayed answer are kept (by reference) for its final line. */
const RECENT_CHUNKS = 8;
/**
 * Streams with one token per unit, by route: Ollama's NDJSON (a line per token) and its OpenAI
 * surface's SSE (an event, ending in a blank line, per token). Anthropic's and Responses' streams
 * interleave other events with the deltas, so there the unit is the delta's quoted type in its
 * data (once per event, whether or not an `event:` line names it too): a text or thinking delta
 * (`content_block_delta`), an output or reasoning text delta (`response.*_text.delta`).
 */
const TOKEN_UNITS = new Map<string, Buffer>([
  ['/api/chat', Buffer.from('\n')],
  ['/api/generate', Buffer.from('\n')],
  ['/v1/chat/completions', Buffer.from('\n\n')],
  ['/v1/completions', Buffer.from('\n\n')],
  ['/v1/messages', Buffer.from('"content_block_delta"')],
  ['/v1/responses', Buffer.from('_text.delta"')],
]);
/** Tokens after a stream's first chunk from which its rate is read (readRate). */
const RATE_TOKENS = 8;

/**
 * One client request for a model, from placement to its last byte (Envoy's router filter): asks
 * routing for a backend (waiting in the queue if need be), runs one UpstreamAttempt at a time,
 * retries on another backend while nothing has reached the client (within the retry budget),
 * relays the answer untouched (each NDJSON line or SSE event the moment it arrives, headers in one
 * writeHead with the first chunk), and fails in the answer's own format. Whatever happens, the lease
 * is released and the request finished exactly once.
 */
export class ModelRequest implements QueuedRequest, AttemptOwner {
  readonly kind: 'model' | 'push';
  readonly model: string;
  private readonly displayModel: string;
  private readonly queue: QueueIdentity;
  private body: Buffer | null;
  private readonly sessionKey: string | null;
  private readonly outputBound: number | null;
  /** Output tokens routing expects: the bound scaled by what the model's answers use of it, or their usual length. */
  private readonly expectedTokens: number | null;
  private readonly continuesConversation: boolean;
  private readonly runnerOptions: RunnerOptions | undefined;
  private readonly promptTokens: number;
  private readonly keepAliveMs: number | undefined;
  private readonly capabilities: readonly string[];
  private readonly path: string;
  private readonly streamed: boolean;
  private readonly requestId: string;
  private readonly startedAt: number;
  readonly record: RequestRecord;

  /** The current try, and every backend tried so far. */
  attempt: UpstreamAttempt | null = null;
  attempts = 0;
  readonly tried = new Set<Backend>();
  /** The request as routing sees it (made at each placement). */
  route: RouteRequest;
  finished = false;
  clientGone = false;
  private queued = false;
  /** Where it entered the placement queue, when it waited (set by the queue; X-Balancer-Queue-Position). */
  queuePosition: number | undefined = undefined;
  /** Counted once in the retry budget from its first retry until it waits in the queue, a backend accepts it, or it finishes. */
  private retrying = false;
  /**
   * Backends that answered this request with a 5xx. Counted against them only once the request is
   * answered well elsewhere: a request that fails everywhere carries its own fault (a template the
   * model cannot render, a poison input), and must not eject every backend it touched.
   */
  private failedOn: Backend[] | null = null;
  /** The answer being relayed: its status, whether its headers went out, its last chunks. */
  private status = 0;
  private headed = false;
  private recent: Buffer[] | null = null;
  /** A resumable stream's delivered bytes (null when the request cannot be resumed). */
  private delivered: DeliveredStream | null = null;
  /** Rewrites a resumed continuation into the client's stream. */
  private splicer: StreamSplicer | null = null;
  /** The build of the model the stream began on: a resume continues only on the same digest. */
  private digest: string | undefined = undefined;
  private resumes = 0;
  /** Counted once in the resume budget from its first resume until it finishes. */
  private resuming = false;
  /** The answer's Content-Type (for an error line after a resume that could not continue). */
  private contentType: string | undefined = undefined;
  /** Counting the first tokens of a stream whose backend has not shown its token rate (readRate). */
  private rateProbe: { unit: Buffer; tokens: number; first: number } | null = null;

  constructor(
    private readonly svc: ModelRequestServices,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    init: ModelRequestInit,
  ) {
    this.kind = init.kind;
    this.model = init.model;
    this.displayModel = init.displayModel;
    this.queue = init.queue;
    this.body = init.body;
    this.sessionKey = init.sessionKey;
    this.outputBound = init.outputBound;
    this.expectedTokens = svc.outputLengths.expected(init.model, init.outputBound);
    this.continuesConversation = init.continuesConversation;
    this.runnerOptions = init.runnerOptions;
    this.promptTokens = Math.ceil(init.body.length / 4);
    this.keepAliveMs = init.keepAliveMs;
    this.capabilities = init.capabilities;
    this.path = init.path;
    this.streamed = init.streamed;
    if (init.resume) this.delivered = new DeliveredStream(init.resume.surface, init.resume.request);
    this.requestId = init.requestId;
    this.startedAt = init.startedAt;
    this.record = init.record;
  }

  start(): void {
    this.svc.open.add(this);
    // A request needing a capability asks the backends that have not listed theirs (/api/show, once
    // per model digest) before it is placed; every other request is placed at once.
    if (this.capabilities.length > 0 && this.svc.inventory.capabilitiesUnknown(this.model)) {
      void this.svc.inventory.learnCapabilities(this.model).then(() => {
        if (!this.finished) this.dispatch();
      });
      return;
    }
    this.dispatch();
  }

  // ---- placement ------------------------------------------------------------------------------

  /** Places the request (or queues it) and starts an attempt. */
  private dispatch(): void {
    this.route = {
      model: this.model,
      modelSize: this.svc.inventory.largestSize(this.model),
      sessionKey: this.sessionKey,
      now: Date.now(),
      displayModel: this.displayModel,
      expectedTokens: this.expectedTokens,
      runnerOptions: this.runnerOptions,
      promptTokens: this.promptTokens,
      queue: this.queue,
      capabilities: this.capabilities,
      route: this.path,
      digest: this.digest,
    };
    // Most requests are placed at once: no promise, no extra turn of the event loop.
    const placed = this.svc.routing.place(this.route, this.tried);
    if (placed.kind === 'lease') return this.startAttempt(placed);
    if (placed.kind === 'no-candidate') return this.fail(placed.status, placed.message, placed.retryAfterS);
    const refused = this.svc.routing.enqueue(this);
    if (refused !== null) return this.fail(refused.status, refused.message, refused.retryAfterS);
    this.queued = true;
    // Waiting in the balancer loads no backend: a queued retry is out of the budget (it waits its turn).
    this.leaveRetryBudget();
  }

  onPlaced(lease: Lease): void {
    this.queued = false;
    if (this.clientGone || this.finished) {
      lease.release();
      return;
    }
    this.startAttempt(lease);
  }

  onRefused(refusal: NoCandidate): void {
    this.queued = false;
    if (this.clientGone) return;
    this.fail(refusal.status, refusal.message, refusal.retryAfterS);
  }

  private startAttempt(lease: Lease): void {
    const b = lease.backend;
    this.attempts++;
    this.tried.add(b);
    const attempt = new UpstreamAttempt(
      this.svc.upstream,
      this,
      this.req,
      this.res,
      lease,
      this.body!,
      this.svc.upstream.targetOf(b),
    );
    this.attempt = attempt;
    this.record.backend = b.name;
    this.record.reason = lease.reason;
    this.record.queuedMs = lease.queuedMs;
    lease.watchLoad(() => this.onLoadHeld(attempt));
    attempt.start();
  }

  /**
   * The backend holds back the load this request started (no room while every model there is
   * busy): nothing has started for it there, so it goes to another candidate rather than wait for
   * one of those models to go idle (steady traffic may never let it). Once per backend, like a
   * missing route; without another candidate it stays where it is.
   */
  private onLoadHeld(attempt: UpstreamAttempt): void {
    if (attempt.done || this.headed || this.res.headersSent || this.clientGone || this.finished) return;
    if (!this.anotherCandidate()) return;
    this.record.retries++;
    attempt.end('model load held back: the server is full');
    this.dispatch();
  }

  // ---- what the attempt reports ---------------------------------------------------------------

  onUpstreamHeaders(attempt: UpstreamAttempt, response: IncomingMessage): void {
    const status = response.statusCode ?? 502;
    // Before the first byte reaches the client a failure may be retried on another backend.
    if (status >= 500 || status === 404) return attempt.collect();
    if (this.splicer !== null && status !== 200) return attempt.collect();
    this.svc.outliers.success(attempt.backend);
    // A retry that a backend accepted is an ordinary request again: the budget guards against
    // retry storms (retries that keep failing), not against a long answer after a good retry.
    this.leaveRetryBudget();
    if (this.recent === null) this.recent = [];
    else this.recent.length = 0;
    // One token per line (or event): where this backend's speed for the model is not known yet,
    // the stream's first tokens tell it (readRate).
    const unit = status === 200 && this.streamed && this.splicer === null ? TOKEN_UNITS.get(this.path) : undefined;
    this.rateProbe =
      unit !== undefined && attempt.backend.learned.rateUnknown(this.model) ? { unit, tokens: -1, first: 0 } : null;
    if (this.splicer === null) {
      this.status = status;
      this.headed = false;
    }
    attempt.relay();
  }

  /** An error status's body: retry elsewhere when it is worth it, else pass it on. */
  onUpstreamBody(attempt: UpstreamAttempt, body: Buffer): void {
    const status = attempt.response!.statusCode ?? 502;
    const b = attempt.backend;
    // A resumed continuation refused: the client's stream began long ago, so it is a broken stream.
    if (this.res.headersSent) return this.onUpstreamBroken(attempt, `HTTP ${status} on resume`);
    const busy = status === 503;
    // Gin's NotFound: this Ollama predates the route. Not the model's absence, not a failure of the
    // backend: it is no candidate for the route from now on, and the request goes elsewhere.
    if (status === 404 && isPageNotFound(attempt.response!.headers['content-type'], body)) {
      b.noteRouteMissing(this.path);
      // Bounded by the fleet, not the retry budget: each backend answers this at most once per route.
      if (!this.clientGone && this.anotherCandidate()) {
        this.record.retries++;
        attempt.end('route missing');
        this.dispatch();
        return;
      }
      attempt.end('route missing');
      return this.fail(404, PAGE_NOT_FOUND);
    }
    // Only a 404 that names the model routed on (or names none) is that model's absence there. A
    // backend that names another read another field of the body than the balancer routes on (say
    // `name`): it says nothing of this model, and forgetting it on each backend tried made it
    // vanish fleet-wide until the next poll. That answer goes to the client as it is.
    const named = status === 404 ? missingModelNamed(body) : null;
    const modelMissing =
      status === 404 && body.includes('not found') && (named === null || normaliseModelName(named) === this.model);
    // Ollama's own backlog is full ("server busy, please try again.  maximum pending requests
    // exceeded"): overload, not failure. Not counted toward ejection; the backend is passed over
    // briefly, and the request goes elsewhere before any byte reached the client.
    if (busy && isOllamaBusy(body)) b.noteBusy();
    else if (status >= 500) (this.failedOn ??= []).push(b);
    if (modelMissing) this.svc.inventory.forgetModel(b, this.model);
    if ((status >= 500 || modelMissing) && this.canRetry()) {
      attempt.end(busy ? 'busy' : `status ${status}`);
      this.retryOrAnswer(modelMissing ? 404 : status, body, attempt.response!.headers['content-type']);
      return;
    }
    this.respondBuffered(attempt, body);
  }

  /** Streams the backend's answer to the client untouched; the headers go out with the first chunk. */
  onUpstreamData(attempt: UpstreamAttempt, chunk: Buffer): void {
    if (!this.headed && !this.head(attempt)) return;
    if (this.rateProbe !== null) this.readRate(attempt, chunk);
    if (this.delivered !== null) {
      // Resumable: whole lines/events only reach the client (and a resumed continuation is rewritten).
      const out = this.delivered.take(this.splicer === null ? chunk : this.splicer.transform(chunk));
      if (out === null || out.length === 0) return;
      chunk = out;
    }
    this.record.bytes += chunk.length;
    const recent = this.recent!;
    if (recent.length === RECENT_CHUNKS) recent.shift();
    recent.push(chunk);
    if (!this.res.write(chunk)) attempt.pauseUntilDrain();
  }

  /**
   * Counts the tokens (lines, or SSE events: TOKEN_UNITS) of the stream's first chunks: once
   * RATE_TOKENS have come after the first chunk, their rate is the backend's early token rate for
   * the model (LearnedStats.noteEarlyRate), unless an answer has shown it meanwhile. Scans only
   * those first chunks, once per request, and only while the rate is unknown.
   */
  private readRate(attempt: UpstreamAttempt, chunk: Buffer): void {
    const p = this.rateProbe!;
    const now = performance.now();
    if (p.tokens < 0) {
      p.tokens = 0;
      p.first = now;
      return;
    }
    const step = p.unit.length;
    for (let i = chunk.indexOf(p.unit); i !== -1; i = chunk.indexOf(p.unit, i + step)) p.tokens++;
    if (p.tokens < RATE_TOKENS) return;
    this.rateProbe = null;
    if (now > p.first) attempt.backend.learned.noteEarlyRate(this.model!, (p.tokens * 1000) / (now - p.first));
  }

  onUpstreamEnd(attempt: UpstreamAttempt): void {
    if (!this.headed) this.head(attempt);
    // Answered well here: the backends that failed it earlier failed on their own account.
    this.settleFailures(true);
    if (this.delivered !== null) {
      // A last line without its newline: pass it on as the backend wrote it.
      const spliced = this.splicer?.rest() ?? null;
      if (spliced !== null) this.delivered.take(spliced);
      const rest = this.delivered.rest();
      if (rest !== null) {
        this.recent!.push(rest);
        this.res.write(rest);
      }
    }
    this.svc.records.finalEvents(this.record, this.recent!, this.streamed);
    this.res.end();
    this.learnFromSuccess(attempt);
    attempt.end(null);
    this.finish(this.status, null);
  }

  onUpstreamFailure(attempt: UpstreamAttempt, why: string): void {
    // A resumed continuation that could not even start: the client's stream is still broken.
    if (this.res.headersSent) return this.onUpstreamBroken(attempt, why);
    this.attemptFailed(attempt, why);
  }

  /**
   * The client stopped reading and the backend waited on it for the idle limit: end the request
   * without blaming the backend (its silence was the client's backpressure), and free its slot.
   */
  onClientStalled(attempt: UpstreamAttempt): void {
    const why = `client stopped reading for ${this.svc.upstream.idleTimeoutMs} ms`;
    attempt.end(why);
    this.res.destroy();
    this.finish(499, why);
  }

  /**
   * The backend failed after its response began. If nothing reached the client yet it is still a
   * clean failure (retried elsewhere); otherwise say so in the stream's own format, then end.
   */
  onUpstreamBroken(attempt: UpstreamAttempt, why: string): void {
    if (attempt.done) return;
    const b = attempt.backend;
    if (!this.res.headersSent && !this.res.destroyed) return this.attemptFailed(attempt, why);
    this.svc.outliers.failure(b, why);
    attempt.end(why);
    if (this.resume(b, why)) return;
    this.endStream(this.contentType ?? attempt.response?.headers['content-type'], `backend ${b.name}: ${why}`);
  }

  /**
   * Continues a broken stream on another backend holding the same build of the model, when the
   * request is resumable, the client is still there, the answer so far is plain text (no tool call,
   * not while thinking) and the budgets allow. False when it cannot (the caller ends the stream).
   */
  private resume(failed: Backend, why: string): boolean {
    const d = this.delivered;
    if (d === null || d.overflow || this.clientGone || this.res.destroyed || this.resumes >= this.svc.resumeMax)
      return false;
    if (!this.resuming && !this.svc.resumeBudget.allows()) return false;
    const digest = this.digest ?? failed.modelsOnDisk.get(this.model)?.digest ?? undefined;
    if (digest === undefined || digest === null) return false;
    d.dropHeld();
    const answer = readDelivered(d.surface, d.text());
    if (typeof answer === 'string') {
      this.svc.log.warn(`request ${this.requestId}: stream from ${failed.name} broke (${why}); not resumed: ${answer}`);
      return false;
    }
    this.digest = digest;
    if (
      !this.svc.routing.hasCandidate(this.model, this.tried, {
        capabilities: this.capabilities,
        route: this.path,
        digest,
      })
    ) {
      this.svc.log.warn(
        `request ${this.requestId}: stream from ${failed.name} broke (${why}); not resumed: no other backend holds ${this.model} ${digest}`,
      );
      return false;
    }
    const body = continuationBody(d.surface, d.request, answer);
    if (typeof body === 'string') return false;
    this.body = body;
    this.splicer = new StreamSplicer(d.surface, answer);
    this.resumes++;
    this.record.resumes = this.resumes;
    if (!this.resuming) {
      this.resuming = true;
      this.svc.resumeBudget.begin();
    }
    this.svc.resumeBudget.started++;
    this.svc.log.warn(
      `request ${this.requestId}: stream from ${failed.name} broke (${why}) after ${answer.tokens} tokens; resuming (${this.resumes}/${this.svc.resumeMax}) on the same model build`,
    );
    this.dispatch();
    return true;
  }

  // ---- the client's side ----------------------------------------------------------------------

  /** The client's response closed: answered in full, or the client left (then stop the upstream work). */
  clientClosed(): void {
    this.svc.open.delete(this);
    if (this.finished) return;
    this.clientGone = true;
    const why = 'client closed the connection';
    if (this.queued) this.svc.routing.cancel(this);
    this.queued = false;
    this.attempt?.end(why);
    this.finish(499, why);
  }

  /** Out of the placement queue without an answer yet (cut() answers it). */
  leaveQueue(): void {
    if (!this.queued) return;
    this.svc.routing.cancel(this);
    this.queued = false;
  }

  /**
   * The drain deadline passed: end now, in the answer's own format (a final error line on a stream
   * that began, 503 with Retry-After and Connection: close on one that had not).
   */
  cut(message: string): void {
    if (this.finished) return;
    this.leaveQueue();
    const attempt = this.attempt;
    // The answer's headers went out in one writeHead (not kept on res): its type is the backend's.
    if (this.res.headersSent) this.endStream(attempt?.response?.headers['content-type'], message);
    else {
      this.res.setHeader('Connection', 'close');
      this.fail(503, message, 1);
    }
    attempt?.end(message);
  }

  // ---- ending ---------------------------------------------------------------------------------

  private head(attempt: UpstreamAttempt): boolean {
    this.headed = true;
    const res = this.res;
    if (res.headersSent || res.destroyed) return !res.destroyed;
    this.record.status = this.status;
    this.record.ttfbMs = Date.now() - this.startedAt;
    this.contentType = attempt.response!.headers['content-type'];
    if (this.delivered !== null) this.digest = attempt.backend.modelsOnDisk.get(this.model)?.digest ?? undefined;
    attempt.backend.learned.noteTtfb(Date.now() - attempt.startedAt);
    attempt.lease.firstByte(this.status < 300);
    try {
      res.writeHead(
        this.status,
        responseHeaders(attempt.response!, attempt.lease, this.attempts, this.queuePosition, this.requestId, false),
      );
    } catch {
      res.destroy();
      return false;
    }
    return true;
  }

  private respondBuffered(attempt: UpstreamAttempt, body: Buffer): void {
    const response = attempt.response!;
    const status = response.statusCode ?? 502;
    this.settleFailures(status < 500);
    const res = this.res;
    if (!res.headersSent && !res.destroyed) {
      const headers = responseHeaders(response, attempt.lease, this.attempts, this.queuePosition, this.requestId, true);
      headers['Content-Length'] = String(body.length);
      if (status === 503 && response.headers['retry-after'] === undefined) headers['Retry-After'] = '1';
      res.writeHead(status, headers);
      res.end(body);
    }
    attempt.end(null);
    this.finish(status, null);
  }

  /** A failure before any response byte: retry elsewhere when allowed, otherwise 502/504. */
  private attemptFailed(attempt: UpstreamAttempt, why: string): void {
    const b = attempt.backend;
    this.svc.outliers.failure(b, why);
    attempt.end(why);
    if (this.clientGone) return this.finish(499, why);
    // The request went out in full and may still be generating there: never start it a second time.
    if (attempt.headersTimedOut) {
      this.settleFailures(false);
      return this.fail(
        504,
        `backend ${b.name} failed: ${why} (not retried: the request was sent and may still be running there)`,
      );
    }
    if (this.canRetry() && this.anotherCandidate()) {
      this.noteRetry();
      this.dispatch();
      return;
    }
    this.fail(why.includes('timeout') ? 504 : 502, `backend ${b.name} failed: ${why}`);
  }

  /** Retries on another backend; if none can take it, the client gets this backend's answer. */
  private retryOrAnswer(status: number, errBody: Buffer, contentType: string | string[] | undefined): void {
    if (!this.anotherCandidate()) {
      this.settleFailures(status < 500);
      const res = this.res;
      if (!res.headersSent && !res.destroyed) {
        // The backend's answer as it was (its own type: Gin's 404 is text/plain).
        const headers: Record<string, string | number | string[]> = {
          'Content-Type': contentType ?? 'application/json; charset=utf-8',
          'Content-Length': errBody.length,
          'X-Request-Id': this.requestId,
        };
        if (status === 503) headers['Retry-After'] = 1;
        res.writeHead(status, headers);
        res.end(errBody);
      }
      this.finish(status, 'no backend left to retry on');
      return;
    }
    this.noteRetry();
    this.dispatch();
  }

  /** Whether a backend not yet tried could take this request. */
  private anotherCandidate(): boolean {
    return this.svc.routing.hasCandidate(this.model, this.tried, { capabilities: this.capabilities, route: this.path });
  }

  private canRetry(): boolean {
    return (
      !this.clientGone && this.attempts < this.svc.retryMaxAttempts && (this.retrying || this.svc.retryBudget.allows())
    );
  }

  /** Counts a retry (in the budget once per request while it is in progress). */
  private noteRetry(): void {
    this.record.retries++;
    if (!this.retrying) {
      this.retrying = true;
      this.svc.retryBudget.begin();
    }
  }

  /** Ends a response that already began with an error line (or a cut, for a non-stream body). */
  private endStream(contentType: string | undefined, message: string): void {
    const res = this.res;
    const line = midStreamError(contentType, message, this.req.url);
    if (line !== null && !res.destroyed && !res.writableEnded) {
      res.end(line);
    } else if (!res.writableEnded) {
      // A JSON body cut short cannot carry an error: close the connection so it cannot pass for success.
      res.destroy();
    }
    this.finish(res.statusCode, message);
  }

  private fail(status: number, message: string, retryAfterS?: number): void {
    // A resumed request that found no backend: its stream began, so it ends with an error line.
    if (this.res.headersSent) return this.endStream(this.contentType, message);
    const headers: Record<string, string | number> = {};
    if (retryAfterS !== undefined) headers['Retry-After'] = retryAfterS;
    sendError(this.req, this.res, status, message, headers);
    this.finish(status, message);
  }

  private learnFromSuccess(attempt: UpstreamAttempt): void {
    const b = attempt.backend;
    const r = this.record;
    const model = this.model;
    attempt.lease.answered(r);
    b.learned.noteAnswer(
      model,
      Date.now() - attempt.startedAt,
      r,
      // Only the request that started a load waited all of it: a later one's load_duration is a part.
      attempt.lease.loadStarter ? b.sizeOf(model) : 0,
      this.streamed && r.ttfbMs !== null ? r.ttfbMs - r.queuedMs : null,
      this.continuesConversation,
    );
    if (this.kind === 'model' && r.status !== undefined && r.status < 300) {
      this.svc.inventory.noteServed(b, model, this.keepAliveMs, r.loadDurationNs);
      // A model answered well: only now may it get an output-length learner (names come from clients).
      this.svc.outputLengths.observe(model, r.evalCount, this.outputBound);
    }
  }

  /**
   * The 5xx answers this request got, counted against their backends now that its outcome is known:
   * all of them when it then succeeded (or only one backend was tried: nothing says it was the
   * request), none when several backends failed it alike (the request's own fault).
   */
  private settleFailures(answeredWell: boolean): void {
    const failed = this.failedOn;
    if (failed === null) return;
    this.failedOn = null;
    if (!answeredWell && failed.length > 1) return;
    for (const b of failed) this.svc.outliers.failure(b, 'HTTP 5xx');
  }

  private finish(status: number, error: string | null): void {
    if (this.finished) return;
    this.finished = true;
    const r = this.record;
    r.status = r.status ?? status;
    if (error !== null) r.error = error;
    r.attempts = this.attempts;
    this.body = null;
    this.delivered = null;
    this.splicer = null;
    this.leaveRetryBudget();
  }

  private leaveRetryBudget(): void {
    if (this.retrying) {
      this.retrying = false;
      this.svc.retryBudget.end();
    }
    if (this.resuming) {
      this.resuming = false;
      this.svc.resumeBudget.end();
    }
  }
}

/**
 * The model a backend's "not found" answer names, if any: Ollama's `model 'x' not found` (older:
 * `model "x" not found, try pulling it first`), in its own, OpenAI's or Anthropic's error shape.
 */
export function missingModelNamed(body: Buffer): string | null {
  let message: unknown;
  try {
    const e = JSON.parse(body.toString('utf8'))?.error;
    message = typeof e === 'string' ? e : e?.message;
  } catch {
    return null;
  }
  if (typeof message !== 'string') return null;
  const m = /^model (['"])(.*)\1 not found/s.exec(message);
  return m ? m[2] : null;
}

/** Ollama's ErrMaxQueue (server/sched.go): its scheduler's pending queue (OLLAMA_MAX_QUEUE) is full. */
function isOllamaBusy(body: Buffer): boolean {
  return body.length < 512 && body.includes('maximum pending requests');
}
