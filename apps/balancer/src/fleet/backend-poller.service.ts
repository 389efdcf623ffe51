import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { parseAgentStatus } from '@app/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { Backend } from './backend';
import { BackendRegistry } from './backend-registry.service';
import { FleetEvents } from './fleet-events';
import { ModelInventory } from './model-inventory';
import { OllamaClient } from './ollama-client';

/**
 * Scheduled polling (@nestjs/schedule, intervals from config): a health probe per backend that never
 * loads a model (GET /api/version), the model inventory (/api/tags and /api/ps), and each backend's
 * gpu-agent. A backend is unhealthy after HEALTH_FAILURE_THRESHOLD consecutive failed probes, stays
 * polled, and returns as soon as one probe succeeds.
 */
@Injectable()
export class BackendPoller implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(BackendPoller.name);
  private readonly running = new Set<string>();
  private stopped = false;

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly inventory: ModelInventory,
    private readonly events: FleetEvents,
    private readonly client: OllamaClient,
    private readonly scheduler: SchedulerRegistry,
  ) {}

  onModuleInit(): void {
    this.every('health', this.config.healthIntervalMs, () => this.probeAll());
    this.every('inventory', this.config.inventoryIntervalMs, () => this.inventoryAll());
    // Agents may also arrive later, with discovered backends (DISCOVERY_AGENT_PORT, registration).
    const d = this.config.discovery;
    const agentsLater = (d.dns.length > 0 && d.agentPort !== null) || d.registration !== null;
    if (agentsLater || this.registry.backends.some((b) => b.config.agentUrl))
      this.every('agents', this.config.agentIntervalMs, () => this.agentsAll());
    // A backend found at run time is probed (and its inventory and agent read) at once, not at the
    // next round: routing knows what it holds within one timeout of its arrival.
    this.registry.onMembership((b, change) => {
      if (change !== 'added' || this.stopped) return;
      void this.probe(b).then(() =>
        b.health === 'healthy' ? this.inventory.refresh(b).catch(() => undefined) : undefined,
      );
      if (b.config.agentUrl) void this.pollAgent(b);
    });
    // First round at once, so routing knows the fleet within one timeout of start.
    void this.guard('health', () => this.probeAll()).then(() => this.guard('inventory', () => this.inventoryAll()));
    void this.guard('agents', () => this.agentsAll());
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    for (const name of ['health', 'inventory', 'agents']) {
      if (this.scheduler.doesExist('interval', `poll-${name}`)) this.scheduler.deleteInterval(`poll-${name}`);
    }
  }

  private every(name: string, ms: number, fn: () => Promise<void>): void {
    const handle = setInterval(() => void this.guard(name, fn), ms);
    handle.unref();
    this.scheduler.addInterval(`poll-${name}`, handle);
  }

  /** setInterval does not wait for the previous run: skip a round rather than overlap. */
  private async guard(name: string, fn: () => Promise<void>): Promise<void> {
    if (this.running.has(name) || this.stopped) return;
    this.running.add(name);
    try {
      await fn();
    } catch (e) {
      this.logger.error(`poll ${name} failed: ${(e as Error).message}`);
    } finally {
      this.running.delete(name);
    }
  }

  async probeAll(): Promise<void> {
    await Promise.all(this.registry.backends.map((b) => this.probe(b)));
  }

  async probe(b: Backend): Promise<void> {
    const now = Date.now();
    b.lastPollAt = now;
    try {
      const r = await this.client.backend(b, '/api/version', { timeoutMs: this.config.healthTimeoutMs });
      if (r.status !== 200) throw new Error(`/api/version answered HTTP ${r.status}`);
      try {
        const v = JSON.parse(r.body.toString('utf8'))?.version;
        if (typeof v === 'string') b.version = v;
      } catch {
        // a 200 without JSON still proves the server is up
      }
      this.markUp(b);
    } catch (e) {
      this.markDown(b, (e as Error).message);
    }
  }

  markUp(b: Backend): void {
    const was = b.health;
    b.consecutiveFailures = 0;
    b.lastOkAt = Date.now();
    b.lastError = null;
    b.health = 'healthy';
    if (was !== 'healthy') {
      this.events.note(b, 'healthy', `was ${was}`);
      if (was === 'unhealthy') {
        // Back from the dead: refresh what it holds before trusting it, and ease it in.
        b.slowStartFrom = Date.now();
        void this.inventory.refresh(b).catch(() => undefined);
      }
      this.registry.capacityChanged();
    }
  }

  markDown(b: Backend, error: string): void {
    b.consecutiveFailures++;
    b.lastError = error;
    if (b.health !== 'unhealthy' && b.consecutiveFailures >= this.config.healthFailureThreshold) {
      b.health = 'unhealthy';
      this.events.note(b, 'unhealthy', error);
      this.registry.capacityChanged();
    }
  }

  async inventoryAll(): Promise<void> {
    await Promise.all(
      this.registry.backends
        .filter((b) => b.health !== 'unhealthy')
        .map((b) =>
          this.inventory.refresh(b).catch((e) => {
            b.lastError = `inventory: ${(e as Error).message}`;
          }),
        ),
    );
    this.registry.capacityChanged();
  }

  async agentsAll(): Promise<void> {
    await Promise.all(this.registry.backends.filter((b) => b.config.agentUrl).map((b) => this.pollAgent(b)));
  }

  /** A quiet or invalid agent only makes GPU data unknown: it never marks the Ollama server down. */
  async pollAgent(b: Backend): Promise<void> {
    const token = b.config.agentToken ?? this.config.agentToken;
    try {
      const r = await this.client.request(b.config.agentUrl!, '/status', {
        timeoutMs: this.config.healthTimeoutMs,
        headers: token ? { authorization: `Bearer ${token}` } : {},
        maxBytes: 4 * 1024 * 1024,
      });
      if (r.status !== 200) throw new Error(`agent answered HTTP ${r.status}`);
      const parsed = parseAgentStatus(JSON.parse(r.body.toString('utf8')));
      if (!parsed.ok) {
        b.agentError = `invalid agent payload: ${parsed.error}`;
        this.logger.warn(
          JSON.stringify({ event: 'agent-invalid', backend: b.name, error: parsed.error.slice(0, 500) }),
        );
        return;
      }
      b.agent = parsed.value;
      b.agentAt = Date.now();
      b.agentError = null;
    } catch (e) {
      b.agentError = (e as Error).message;
    }
  }
}
