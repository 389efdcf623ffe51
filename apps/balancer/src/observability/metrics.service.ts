import { Inject, Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from '../fleet/backend-registry.service';
import { BackendEvent, FleetEvents } from '../fleet/fleet-events';
import { RequestListener, RequestRecord, RequestRecords } from '../proxy/request-records';
import { PlacementQueue } from '../routing/placement-queue';
import { Decision, RoutingService } from '../routing/routing.service';
import { UsageService } from '../usage/usage.service';
import { SHARED_STATE, SharedState } from '../shared-state';
import { FastCounter, FastHistogram } from './fast-metrics';
import { ModelLabels, routeLabel } from './labels';
import { RecentTraffic } from './recent-traffic';

type Inc = { inc(v?: number): void };
type Obs = { observe(v: number): void };

const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const QUEUE_BUCKETS = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const TPS_BUCKETS = [1, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000];
const LOAD_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160];

/** The child metrics one request touches, found with one lookup. */
interface RequestSeries {
  requests: Map<number, Inc>;
  duration: Obs;
  ttfb: Obs;
  bytes: Inc;
  queueWait: Obs;
  retries: Inc;
  resumes: Inc;
  evalTokens: Inc;
  evalSeconds: Inc;
  tokensPerSecond: Obs;
  promptTokens: Inc;
  loadSeconds: Obs;
}

/**
 * The balancer's Prometheus metrics on a registry of its own (several apps may live in one test
 * process). Per-request series are fed from RequestRecords at the end of each request through
 * child metrics cached per label set; nothing runs per streamed chunk. Gauges that mirror live state
 * (in-flight, queue, health) are read at scrape time.
 */
@Injectable()
export class MetricsService implements OnModuleInit, OnModuleDestroy, RequestListener {
  readonly registry = new Registry();
  readonly traffic: RecentTraffic;
  private readonly models = new ModelLabels(100);

  private readonly requests: FastCounter<'route' | 'model' | 'backend' | 'status'>;
  private readonly duration: FastHistogram<'route' | 'model' | 'backend'>;
  private readonly ttfb: FastHistogram<'route' | 'model' | 'backend'>;
  private readonly responseBytes: FastCounter<'route' | 'backend'>;
  private readonly queueWait: FastHistogram<'model'>;
  private readonly retries: FastCounter<'route' | 'model'>;
  private readonly resumes: FastCounter<'route' | 'model'>;
  private readonly decisions: FastCounter<'reason' | 'backend'>;
  private readonly tokensPerSecond: FastHistogram<'model' | 'backend'>;
  private readonly evalTokens: FastCounter<'model' | 'backend'>;
  private readonly promptTokens: FastCounter<'model' | 'backend'>;
  private readonly evalSeconds: FastCounter<'model' | 'backend'>;
  private readonly loadSeconds: FastHistogram<'model' | 'backend'>;
  private readonly ejections: Counter<'backend'>;
  private readonly ejectionCounts = new Map<string, number>();

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly backends: BackendRegistry,
    private readonly routing: RoutingService,
    private readonly queue: PlacementQueue,
    private readonly fleetEvents: FleetEvents,
    private readonly records: RequestRecords,
    private readonly usage: UsageService,
    @Inject(SHARED_STATE) shared: SharedState | null,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.traffic = new RecentTraffic(backends.backends.map((b) => b.name));
    backends.onMembership((b, change) => {
      if (change === 'added') this.traffic.addBackend(b.name);
    });

    this.requests = new FastCounter({
      name: 'balancer_requests_total',
      help: 'Requests answered, by route (a fixed set, else "other"), model, backend ("none" when none was picked) and HTTP status.',
      labelNames: ['route', 'model', 'backend', 'status'],
      registers,
    });
    this.duration = new FastHistogram({
      name: 'balancer_request_duration_seconds',
      help: 'End-to-end time from the request arriving to the last byte sent (queue and retries included).',
      labelNames: ['route', 'model', 'backend'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.ttfb = new FastHistogram({
      name: 'balancer_time_to_first_byte_seconds',
      help: 'Time from the request arriving to the response headers leaving for the client (queue and retries included).',
      labelNames: ['route', 'model', 'backend'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.responseBytes = new FastCounter({
      name: 'balancer_response_bytes_total',
      help: 'Response body bytes relayed from backends.',
      labelNames: ['route', 'backend'],
      registers,
    });
    this.queueWait = new FastHistogram({
      name: 'balancer_queue_wait_seconds',
      help: 'Time a routed request waited in the balancer queue for a free slot (0 when placed at once).',
      labelNames: ['model'],
      buckets: QUEUE_BUCKETS,
      registers,
    });
    this.retries = new FastCounter({
      name: 'balancer_retries_total',
      help: 'Retries on another backend before the first byte.',
      labelNames: ['route', 'model'],
      registers,
    });
    this.resumes = new FastCounter({
      name: 'balancer_stream_resumes_total',
      help: 'Streams broken after their first byte and continued on another backend (STREAM_RESUME).',
      labelNames: ['route', 'model'],
      registers,
    });
    this.decisions = new FastCounter({
      name: 'balancer_routing_decisions_total',
      help: 'Routing decisions by reason (warm, cold-load, affinity, ...) and chosen backend.',
      labelNames: ['reason', 'backend'],
      registers,
    });
    this.tokensPerSecond = new FastHistogram({
      name: 'balancer_tokens_per_second',
      help: "Generation speed of a request: eval_count / eval_duration from Ollama's final chunk.",
      labelNames: ['model', 'backend'],
      buckets: TPS_BUCKETS,
      registers,
    });
    this.evalTokens = new FastCounter({
      name: 'balancer_eval_tokens_total',
      help: "Generated tokens (eval_count of Ollama's final chunks).",
      labelNames: ['model', 'backend'],
      registers,
    });
    this.promptTokens = new FastCounter({
      name: 'balancer_prompt_eval_tokens_total',
      help: "Prompt tokens evaluated (prompt_eval_count of Ollama's final chunks).",
      labelNames: ['model', 'backend'],
      registers,
    });
    this.evalSeconds = new FastCounter({
      name: 'balancer_eval_duration_seconds_total',
      help: "Time spent generating (eval_duration of Ollama's final chunks).",
      labelNames: ['model', 'backend'],
      registers,
    });
    this.loadSeconds = new FastHistogram({
      name: 'balancer_model_load_duration_seconds',
      help: 'Model load time Ollama reported (load_duration of the final chunk); a warm model reports a few ms.',
      labelNames: ['model', 'backend'],
      buckets: LOAD_BUCKETS,
      registers,
    });

    this.ejections = new Counter({
      name: 'balancer_ejections_total',
      help: 'Times passive health ejected a backend after consecutive failures.',
      labelNames: ['backend'],
      registers,
      collect: () => {
        this.ejections.reset();
        for (const b of this.backends.backends)
          this.ejections.inc({ backend: b.name }, this.ejectionCounts.get(b.name) ?? 0);
      },
    });
    const live = <L extends string>(name: string, help: string, labelNames: L[], fill: (g: Gauge<L>) => void) =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          fill(this);
        },
      });
    const perBackend = (
      name: string,
      help: string,
      value: (b: BackendRegistry['backends'][number], now: number) => number | null,
    ) =>
      live(name, help, ['backend'], (g) => {
        const now = Date.now();
        for (const b of this.backends.backends) {
          const v = value(b, now);
          if (v !== null) g.set({ backend: b.name }, v);
        }
      });
    perBackend('balancer_backend_in_flight', 'Requests in flight to the backend now.', (b) => b.inFlight);
    perBackend(
      'balancer_backend_up',
      '1 when the active health check passes, 0 when the backend is unhealthy (absent until first checked).',
      (b) => (b.health === 'unknown' ? null : b.health === 'healthy' ? 1 : 0),
    );
    perBackend(
      'balancer_backend_available',
      '1 when routing may send new requests to the backend (healthy, not cordoned, not ejected).',
      (b, now) => (b.isAvailable(now) ? 1 : 0),
    );
    perBackend('balancer_backend_ejected', '1 while passive health keeps the backend ejected.', (b, now) =>
      b.isEjected(now) ? 1 : 0,
    );
    perBackend('balancer_backend_cordoned', '1 while an admin has cordoned the backend.', (b) => (b.cordoned ? 1 : 0));
    perBackend(
      'balancer_backend_models_loaded',
      'Models the backend holds in memory (as last seen by the balancer).',
      (b) => b.modelsLoaded.size,
    );
    perBackend(
      'balancer_backend_agent_fresh',
      '1 when the gpu-agent beside the backend gave a fresh reading (absent without an agent).',
      (b, now) => (b.config.agentUrl ? (b.freshAgent(this.config.agentStaleMs, now) !== null ? 1 : 0) : null),
    );
    perBackend(
      'balancer_backend_gpu_utilization_percent',
      'Mean GPU utilization the agent reported (absent when unknown or stale).',
      (b, now) => b.gpuUtilization(this.config.agentStaleMs, now),
    );
    live('balancer_backend_model_in_flight', 'Requests in flight per backend and model.', ['backend', 'model'], (g) => {
      for (const b of this.backends.backends)
        for (const [m, n] of b.modelInFlight) g.inc({ backend: b.name, model: this.models.label(m) }, n);
    });
    live('balancer_queue_length', 'Requests waiting in the balancer queue now.', [], (g) => g.set(this.queue.length));
    live('balancer_queue_max', 'Capacity of the balancer queue (QUEUE_MAX).', [], (g) => g.set(this.config.queueMax));
    const counterFrom = (name: string, help: string, value: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(value());
        },
      });
    counterFrom('balancer_queued_total', 'Requests that had to wait in the queue.', () => this.queue.counters.queued);
    counterFrom(
      'balancer_queue_timeouts_total',
      'Requests answered 503 after waiting QUEUE_TIMEOUT_MS in the queue.',
      () => this.queue.counters.timeouts,
    );
    counterFrom(
      'balancer_queue_rejected_total',
      'Requests answered 503 because the queue was full.',
      () => this.queue.counters.rejected,
    );
    counterFrom(
      'balancer_queue_displaced_total',
      'Waiting requests answered 503 because a higher class took their place in the full queue.',
      () => this.queue.counters.displaced,
    );
    counterFrom(
      'balancer_queue_shed_total',
      'Requests of a sheddable class answered 429 instead of waiting.',
      () => this.queue.counters.shed,
    );
    live(
      'balancer_queue_waiting',
      'Requests waiting in the balancer queue now, by priority class and API key ("none" without a key).',
      ['class', 'key'],
      (g) => {
        for (const w of this.queue.waitingByClassAndKey())
          g.set({ class: w.cls, key: w.key === '' ? 'none' : w.key }, w.waiting);
      },
    );
    // Per-key usage: label values are configured key names only (the ledger holds nothing else).
    const perKey = <L extends string>(name: string, help: string, labelNames: L[], fill: (c: Counter<L>) => void) =>
      new Counter<L>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          fill(this);
        },
      });
    perKey(
      'balancer_key_tokens_total',
      'Tokens used per API key: kind="prompt" (prompt_eval_count, prompt_tokens, input_tokens) or "output".',
      ['key', 'kind'],
      (c) => {
        for (const u of this.usage.view()) {
          c.inc({ key: u.key, kind: 'prompt' }, u.promptTokens);
          c.inc({ key: u.key, kind: 'output' }, u.outputTokens);
        }
      },
    );
    perKey(
      'balancer_key_requests_total',
      'Model requests answered by a backend per API key and class; metered="false" when the answer carried no token counts.',
      ['key', 'class', 'metered'],
      (c) => {
        for (const u of this.usage.view()) {
          c.inc({ key: u.key, class: u.class, metered: 'true' }, u.requests - u.unmeteredRequests);
          c.inc({ key: u.key, class: u.class, metered: 'false' }, u.unmeteredRequests);
        }
      },
    );
    perKey(
      'balancer_quota_refusals_total',
      'Requests refused (429) because their key was over a token quota, by key and limit.',
      ['key', 'limit'],
      (c) => {
        for (const [id, n] of this.usage.refusals) {
          const [key, limit] = id.split('\u0000');
          c.inc({ key, limit }, n);
        }
      },
    );
    if (shared) {
      // Only with REDIS_URL: several replicas sharing state.
      live(
        'balancer_shared_state_up',
        '1 while this replica shares state through Redis (REDIS_URL), 0 while it serves on local state with its share of each cap.',
        [],
        (g) => g.set(shared.up ? 1 : 0),
      );
      live(
        'balancer_shared_state_replicas',
        'Balancer replicas alive at the last heartbeat (the degraded caps divide by this).',
        [],
        (g) => g.set(shared.link.replicasSeen),
      );
      live('balancer_shared_slots_held', 'Slots this replica holds in Redis, renewed by its heartbeat.', [], (g) =>
        g.set(shared.slots.held.size),
      );
      counterFrom(
        'balancer_shared_state_outages_total',
        'Times this replica lost Redis and fell back to local state.',
        () => shared.link.outages,
      );
      counterFrom(
        'balancer_shared_slots_handed_over_total',
        'Slots freed by any replica and handed straight to a request waiting here.',
        () => shared.slots.counters.handedOver,
      );
    }
  }

  onModuleInit(): void {
    this.records.listeners.push(this);
    this.routing.decisionListeners.push(this.onDecision);
    this.fleetEvents.listeners.push(this.onBackendEvent);
  }

  onModuleDestroy(): void {
    const k = this.fleetEvents.listeners.indexOf(this.onBackendEvent);
    if (k >= 0) this.fleetEvents.listeners.splice(k, 1);
    const i = this.records.listeners.indexOf(this);
    if (i >= 0) this.records.listeners.splice(i, 1);
    const j = this.routing.decisionListeners.indexOf(this.onDecision);
    if (j >= 0) this.routing.decisionListeners.splice(j, 1);
  }

  /** Once per request, when its response ends (or the client left). */
  onRequestEnd(r: RequestRecord, durationMs: number): void {
    const route = routeLabel(r.path);
    // A name no backend holds (a typo, a 404) must not use up the label budget.
    const model =
      r.backend !== null || this.known(r.model) ? this.models.label(r.model) : r.model === null ? 'none' : 'unknown';
    const backend = r.backend ?? 'none';
    const status = r.status ?? 0;
    // One lookup per request finds every child metric of its (route, model, backend).
    const key = `${route}\u0000${model}\u0000${backend}`;
    let s = this.series.get(key);
    if (s === undefined) this.series.set(key, (s = this.makeSeries(route, model, backend)));
    let byStatus = s.requests.get(status);
    if (byStatus === undefined)
      s.requests.set(status, (byStatus = this.requests.labels(route, model, backend, String(status))));
    byStatus.inc();
    s.duration.observe(durationMs / 1000);
    if (r.ttfbMs !== null) s.ttfb.observe(r.ttfbMs / 1000);
    if (r.bytes > 0) s.bytes.inc(r.bytes);
    if (r.backend !== null) s.queueWait.observe(r.queuedMs / 1000);
    if (r.retries > 0) s.retries.inc(r.retries);
    if (r.resumes !== undefined) s.resumes.inc(r.resumes);
    if (r.evalCount !== undefined) {
      s.evalTokens.inc(r.evalCount);
      if (r.evalDurationNs !== undefined && r.evalDurationNs > 0) {
        s.evalSeconds.inc(r.evalDurationNs / 1e9);
        if (r.evalCount > 0) s.tokensPerSecond.observe(r.evalCount / (r.evalDurationNs / 1e9));
      }
    }
    if (r.promptEvalCount !== undefined) s.promptTokens.inc(r.promptEvalCount);
    if (r.loadDurationNs !== undefined) s.loadSeconds.observe(r.loadDurationNs / 1e9);
    const error = status >= 500 || (r.error !== null && status !== 499);
    this.traffic.record(Date.now(), durationMs, r.ttfbMs, error, r.backend, r.evalCount);
  }

  private readonly series = new Map<string, RequestSeries>();

  private makeSeries(route: string, model: string, backend: string): RequestSeries {
    return {
      requests: new Map(),
      duration: this.duration.labels(route, model, backend),
      ttfb: this.ttfb.labels(route, model, backend),
      bytes: this.responseBytes.labels(route, backend),
      queueWait: this.queueWait.labels(model),
      retries: this.retries.labels(route, model),
      resumes: this.resumes.labels(route, model),
      evalTokens: this.evalTokens.labels(model, backend),
      evalSeconds: this.evalSeconds.labels(model, backend),
      tokensPerSecond: this.tokensPerSecond.labels(model, backend),
      promptTokens: this.promptTokens.labels(model, backend),
      loadSeconds: this.loadSeconds.labels(model, backend),
    };
  }

  private known(model: string | null): boolean {
    if (model === null) return false;
    for (const b of this.backends.backends) if (b.hasModel(model)) return true;
    return false;
  }

  private readonly onDecision = (d: Decision): void => {
    this.decisions.labels(d.reason, d.backend).inc();
  };

  /** Ejections are counted as they happen (EventLog writes every event's line). */
  private readonly onBackendEvent = (e: BackendEvent): void => {
    if (e.event === 'ejected') this.ejectionCounts.set(e.backend, (this.ejectionCounts.get(e.backend) ?? 0) + 1);
  };

  async scrape(): Promise<string> {
    return this.registry.metrics();
  }
}
