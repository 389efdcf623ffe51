import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { ConfigType } from '@nestjs/config';
import type { AgentRegistrationDto } from '@app/common';
import { agentConfig } from '../config/agent.config';
import { AGENT_VERSION } from '../version';
import { BalancerLink, BalancerLinkState } from './balancer-link';

/**
 * Announces this agent and its Ollama server to every balancer in BALANCER_URL (one BalancerLink
 * each), heartbeats, and deregisters on shutdown (SIGTERM, through Nest's shutdown hooks). Off when
 * BALANCER_URL is unset: then the balancer lists this server in its own configuration instead.
 */
@Injectable()
export class RegistrationService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(RegistrationService.name);
  private readonly links: BalancerLink[] = [];

  constructor(@Inject(agentConfig.KEY) private readonly cfg: ConfigType<typeof agentConfig>) {
    const r = cfg.registration;
    if (!r) return;
    const body: AgentRegistrationDto = {
      name: r.name,
      ollamaUrl: r.ollamaUrl,
      agentUrl: r.agentUrl,
      agentVersion: AGENT_VERSION,
    };
    if (r.parallel !== undefined) body.parallel = r.parallel;
    if (r.maxLoadedModels !== undefined) body.maxLoadedModels = r.maxLoadedModels;
    for (const balancerUrl of r.balancerUrls) {
      this.links.push(
        new BalancerLink({
          balancerUrl,
          token: r.token,
          body,
          retryMaxMs: r.retryMaxMs,
          timeoutMs: r.timeoutMs,
          log: (level, message) => this.logger[level](message),
        }),
      );
    }
  }

  onApplicationBootstrap(): void {
    const r = this.cfg.registration;
    if (!r) return;
    this.logger.log(
      `registering as ${r.name} (Ollama ${r.ollamaUrl}, agent ${r.agentUrl}) with ${r.balancerUrls.join(', ')}`,
    );
    for (const link of this.links) link.start();
  }

  /** Before the HTTP server closes, so a balancer that polls us during the DELETE still gets answers. */
  async beforeApplicationShutdown(): Promise<void> {
    await Promise.all(this.links.map((l) => l.stop()));
  }

  /** For GET /status: null when registration is off. */
  state(): BalancerLinkState[] | null {
    return this.cfg.registration ? this.links.map((l) => ({ ...l.status })) : null;
  }
}
