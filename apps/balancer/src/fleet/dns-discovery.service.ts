import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { promises as dns } from 'dns';
import { isIPv4, isIPv6 } from 'net';
import { BALANCER_CONFIG, BackendConfig, BalancerConfig, DnsDiscoveryTarget } from '../config/balancer-config';
import { BackendRegistry } from './backend-registry.service';
import { FleetEvents } from './fleet-events';

/** Resolves a name to its addresses (IPv4 or IPv6, no brackets). Replaceable for tests. */
export type DnsResolver = (host: string) => Promise<string[]>;
export const DNS_RESOLVER = Symbol('DNS_RESOLVER');

/**
 * The system's resolver, as a client in the pod would resolve the name: getaddrinfo with the
 * search domains of /etc/resolv.conf (so a short Kubernetes Service name works) and /etc/hosts.
 */
export const systemResolver: DnsResolver = async (host) =>
  (await dns.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/**
 * OLLAMA_BACKENDS_DNS: every address each name resolves to is a backend, named `address:port` as
 * OLLAMA_BACKENDS names them. The names are resolved again every DISCOVERY_INTERVAL_MS: a new
 * address becomes a backend (probed at once), one that vanished retires (no new requests, in-flight
 * ones finish). A failed lookup changes nothing: a DNS outage must not empty the fleet; health
 * probes judge the servers meanwhile.
 */
@Injectable()
export class DnsDiscovery implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(DnsDiscovery.name);
  private running: Promise<void> | null = null;
  private stopped = false;
  /** Names of the backends each target produced, by target index. */
  private readonly found = new Map<number, Set<string>>();
  /** The last error per target, so a failing name is logged once per streak, not every round. */
  private readonly lastError = new Map<number, string>();

  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly registry: BackendRegistry,
    private readonly events: FleetEvents,
    private readonly scheduler: SchedulerRegistry,
    @Inject(DNS_RESOLVER) private readonly resolve: DnsResolver,
  ) {}

  onApplicationBootstrap(): void {
    const d = this.config.discovery;
    if (d.dns.length === 0) return;
    this.logger.log(
      `DNS discovery: ${d.dns.map((t) => `${t.host}:${t.port}`).join(', ')} every ${d.intervalMs} ms${d.agentPort ? `, agents on port ${d.agentPort}` : ''}`,
    );
    const handle = setInterval(() => void this.refresh(), d.intervalMs);
    handle.unref();
    this.scheduler.addInterval('dns-discovery', handle);
    void this.refresh();
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    if (this.scheduler.doesExist('interval', 'dns-discovery')) this.scheduler.deleteInterval('dns-discovery');
  }

  /** One round over every name; rounds never overlap (a slow resolver skips the next tick). */
  refresh(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.running ??= this.round().finally(() => (this.running = null));
    return this.running;
  }

  private async round(): Promise<void> {
    await Promise.all(this.config.discovery.dns.map((t, i) => this.refreshTarget(t, i)));
  }

  private async refreshTarget(t: DnsDiscoveryTarget, i: number): Promise<void> {
    let addresses: string[];
    try {
      const all = [...new Set(await this.resolve(t.host))];
      // A dual-stack name lists each server twice (A and AAAA): one family, or every server would
      // count as two backends. IPv4 when there is any, as most clusters are reached by it.
      const v4 = all.filter((a) => isIPv4(a));
      addresses = v4.length > 0 ? v4 : all;
    } catch (e) {
      const message = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      if (this.lastError.get(i) !== message)
        this.logger.warn(
          `DNS discovery: ${t.host} did not resolve (${message}); keeping its ${this.found.get(i)?.size ?? 0} backend(s)`,
        );
      this.lastError.set(i, message);
      return;
    }
    if (this.stopped) return;
    if (this.lastError.delete(i))
      this.logger.log(`DNS discovery: ${t.host} resolves again (${addresses.length} address(es))`);
    const previous = this.found.get(i) ?? new Set<string>();
    const now = new Set<string>();
    for (const address of addresses) {
      const cfg = this.backendFor(t, address);
      const b = this.registry.add(cfg, 'dns');
      if (!b) {
        if (!previous.has(cfg.name))
          this.logger.warn(
            `DNS discovery: ${cfg.name} from ${t.host} is already a backend (${this.registry.get(cfg.name)?.source ?? 'another source'}); not added twice`,
          );
        continue;
      }
      now.add(cfg.name);
      if (!previous.has(cfg.name)) this.events.note(b, 'joined', `DNS ${t.host}`);
    }
    for (const name of previous) {
      if (now.has(name)) continue;
      const b = this.registry.get(name);
      if (b) this.events.note(b, 'retiring', `gone from DNS ${t.host}`);
      this.registry.retire(name, `gone from DNS ${t.host}`);
    }
    this.found.set(i, now);
  }

  private backendFor(t: DnsDiscoveryTarget, address: string): BackendConfig {
    const host = isIPv6(address) ? `[${address}]` : address;
    const parallel = this.config.backendParallel ?? 1;
    return {
      name: `${host}:${t.port}`,
      url: `${t.protocol}//${host}:${t.port}`,
      weight: 1,
      parallel,
      learnSlots: this.config.backendParallel === null,
      maxConcurrency: 0,
      modelConcurrency: this.config.backendParallel === null ? 0 : parallel,
      maxLoadedModels: 0,
      agentUrl: this.config.discovery.agentPort ? `http://${host}:${this.config.discovery.agentPort}` : undefined,
    };
  }
}
