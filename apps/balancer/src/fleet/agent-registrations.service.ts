import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import type { AgentRegistrationAcceptedDto, AgentRegistrationDto } from '@app/common';
import { BALANCER_CONFIG, BackendConfig, BalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from './backend-registry.service';
import { FleetEvents } from './fleet-events';
import { REGISTERED_BACKEND_STORE, RegisteredBackendStore, Registration } from './registered-backends';

export type RegistrationOutcome =
  { status: 200; body: AgentRegistrationAcceptedDto } | { status: 409 | 429; error: string };

/**
 * Agents that registered themselves (POST /balancer/registry/agents): each is a backend while it
 * heartbeats. One that deregisters, or stops heartbeating for REGISTRATION_TTL_MS, retires (drained,
 * never cut). The registrations live in a RegisteredBackendStore; every replica reconciles its
 * registry with the store on a timer, so a shared store gives all replicas the same backends.
 */
@Injectable()
export class AgentRegistrations implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(AgentRegistrations.name);
  private sweeping: Promise<void> | null = null;
  private stopped = false;

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly events: FleetEvents,
    private readonly scheduler: SchedulerRegistry,
    @Inject(REGISTERED_BACKEND_STORE) private readonly store: RegisteredBackendStore,
  ) {}

  get enabled(): boolean {
    return this.config.discovery.registration !== null;
  }

  /** How often registrations are checked for expiry: a fraction of the heartbeat, within 50 ms–5 s. */
  get sweepMs(): number {
    const r = this.config.discovery.registration;
    return r ? Math.min(5000, Math.max(50, Math.floor(r.heartbeatMs / 2))) : 0;
  }

  onApplicationBootstrap(): void {
    const r = this.config.discovery.registration;
    if (!r) return;
    this.logger.log(
      `agent registration on: heartbeat ${r.heartbeatMs} ms, dropped after ${r.ttlMs} ms without one, at most ${r.maxBackends} backends`,
    );
    const handle = setInterval(() => void this.sweep(), this.sweepMs);
    handle.unref();
    this.scheduler.addInterval('agent-registrations', handle);
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    if (this.scheduler.doesExist('interval', 'agent-registrations'))
      this.scheduler.deleteInterval('agent-registrations');
  }

  /** A registration or a heartbeat. The DTO is already valid (parseAgentRegistration). */
  async register(dto: AgentRegistrationDto, now = Date.now()): Promise<RegistrationOutcome> {
    const r = this.config.discovery.registration!;
    const ollamaUrl = new URL(dto.ollamaUrl).origin;
    const agentUrl = dto.agentUrl === undefined ? undefined : new URL(dto.agentUrl).origin;
    // Configured and DNS-found backends are not the registrants' to take over.
    const byName = this.registry.get(dto.name);
    if (byName && byName.source !== 'registered')
      return {
        status: 409,
        error: `backend name '${dto.name}' is taken by a ${byName.source === 'dns' ? 'DNS-discovered' : 'configured'} backend`,
      };
    const byUrl = this.registry.findByUrl(ollamaUrl);
    if (byUrl && (byUrl.source !== 'registered' || byUrl.name !== dto.name))
      return { status: 409, error: `${ollamaUrl} is already the backend '${byUrl.name}'` };

    const reg: Registration = {
      name: dto.name,
      ollamaUrl,
      agentUrl,
      parallel: dto.parallel,
      maxLoadedModels: dto.maxLoadedModels,
      expiresAt: now + r.ttlMs,
    };
    const stored = await this.store.upsert(reg, now, r.maxBackends);
    if (!stored.ok) return { status: stored.status, error: stored.error };
    const b = this.registry.add(this.backendConfig(reg), 'registered');
    if (!b) {
      // The previous registration of this name (other URLs) expired but still drains requests.
      await this.store.remove(dto.name);
      return {
        status: 409,
        error: `backend name '${dto.name}' is still draining its previous registration; try again when its requests have ended`,
      };
    }
    if (stored.created) {
      this.events.note(b, 'joined', `registered by its agent (${agentUrl ?? 'no agent URL'})`);
      this.logger.log(`registered backend ${dto.name}: ${ollamaUrl}${agentUrl ? `, agent ${agentUrl}` : ''}`);
    }
    return { status: 200, body: { name: dto.name, heartbeatIntervalMs: r.heartbeatMs, ttlMs: r.ttlMs } };
  }

  /** DELETE: the backend retires now. Unknown names, and backends that were not registered, are left alone. */
  async deregister(name: string): Promise<void> {
    const b = this.registry.get(name);
    if (b && b.source !== 'registered') return;
    await this.store.remove(name);
    if (b && b.retiring === null) {
      this.events.note(b, 'retiring', 'its agent deregistered');
      this.logger.log(`backend ${name} deregistered by its agent: draining`);
      this.registry.retire(name, 'deregistered by its agent');
    }
  }

  /** Retires registered backends whose registration expired (or another replica removed); adds ones another replica accepted. */
  sweep(now = Date.now()): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.sweeping ??= this.reconcile(now)
      .catch((e: Error) => this.logger.warn(`registration sweep failed: ${e.message}`))
      .finally(() => (this.sweeping = null));
    return this.sweeping;
  }

  private async reconcile(now: number): Promise<void> {
    const live = await this.store.list(now);
    const names = new Set(live.map((r) => r.name));
    for (const b of [...this.registry.backends]) {
      if (b.source !== 'registered' || b.retiring !== null || names.has(b.name)) continue;
      this.events.note(b, 'retiring', 'no heartbeat from its agent');
      this.logger.warn(
        `backend ${b.name}: no heartbeat from its agent for ${this.config.discovery.registration!.ttlMs} ms: draining`,
      );
      this.registry.retire(b.name, 'no heartbeat from its agent');
    }
    for (const reg of live) {
      const existing = this.registry.get(reg.name);
      if (existing && existing.retiring === null) continue;
      const b = this.registry.add(this.backendConfig(reg), 'registered');
      if (b && !existing) this.events.note(b, 'joined', 'registered through another replica');
    }
  }

  private backendConfig(reg: Registration): BackendConfig {
    const parallel = reg.parallel ?? this.config.backendParallel ?? 1;
    return {
      name: reg.name,
      url: reg.ollamaUrl,
      weight: 1,
      parallel,
      learnSlots: (reg.parallel ?? null) === null && this.config.backendParallel === null,
      maxConcurrency: 0,
      modelConcurrency: (reg.parallel ?? null) === null && this.config.backendParallel === null ? 0 : parallel,
      maxLoadedModels: reg.maxLoadedModels ?? 0,
      agentUrl: reg.agentUrl,
    };
  }
}
