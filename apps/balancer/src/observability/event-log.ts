import { Inject, Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { BackendEvent, FleetEvents } from '../fleet/fleet-events';
import { RequestListener, RequestRecord, RequestRecords } from '../proxy/request-records';
import { Decision, RoutingService } from '../routing/routing.service';
import { JsonLog } from './json-log';

/**
 * The balancer's JSON lines on stdout: one per request (LOG_REQUESTS; a 5xx is a warn line, the rest
 * info), one per backend event, and at debug one per routing decision.
 */
@Injectable()
export class EventLog implements OnModuleInit, OnModuleDestroy, RequestListener {
  readonly log: JsonLog;
  private readonly logRequests: boolean;
  /** Configured API key names: only these may appear in a log line, never a key itself. */
  private readonly keyNames: Set<string>;

  constructor(
    @Inject(BALANCER_CONFIG) config: BalancerConfig,
    private readonly records: RequestRecords,
    private readonly routing: RoutingService,
    private readonly fleetEvents: FleetEvents,
  ) {
    this.log = new JsonLog(config.logLevel);
    this.logRequests = config.logRequests;
    this.keyNames = new Set(config.apiKeys.map((k) => k.name));
  }

  onModuleInit(): void {
    this.records.listeners.push(this);
    this.routing.decisionListeners.push(this.onDecision);
    this.fleetEvents.listeners.push(this.onBackendEvent);
  }

  onModuleDestroy(): void {
    remove(this.records.listeners, this);
    remove(this.routing.decisionListeners, this.onDecision);
    remove(this.fleetEvents.listeners, this.onBackendEvent);
  }

  onRequestEnd(record: RequestRecord, durationMs: number): void {
    if (!this.logRequests) return;
    const status = record.status ?? 0;
    this.log.line(status >= 500 ? 'warn' : 'log', 'request', {
      id: record.id,
      method: record.method,
      path: record.path,
      model: record.model,
      backend: record.backend,
      status,
      bytes: record.bytes,
      ttfbMs: record.ttfbMs,
      durationMs,
      queuedMs: record.queuedMs,
      retries: record.retries,
      attempts: record.attempts,
      reason: record.reason,
      key: record.apiKey !== null && this.keyNames.has(record.apiKey) ? record.apiKey : null,
      class: record.priorityClass,
      promptTokens: record.promptTokens,
      outputTokens: record.outputTokens,
      evalCount: record.evalCount,
      promptEvalCount: record.promptEvalCount,
      error: record.error,
    });
  }

  private readonly onDecision = (d: Decision): void => {
    if (!this.log.enabled('debug')) return;
    this.log.line('debug', 'route', {
      model: d.model,
      backend: d.backend,
      reason: d.reason,
      predictedMs: d.predictedMs ?? null,
      queuedMs: d.queuedMs,
      candidates: d.candidates,
    });
  };

  /** Each backend event (ejected, healthy/unhealthy, cordoned...) as it happens. */
  private readonly onBackendEvent = (e: BackendEvent): void => {
    this.log.line(e.event === 'ejected' || e.event === 'unhealthy' ? 'warn' : 'log', 'backend', {
      backend: e.backend,
      change: e.event,
      detail: e.detail,
    });
  };
}

function remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}
