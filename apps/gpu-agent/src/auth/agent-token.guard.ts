import { CanActivate, ExecutionContext, Inject, Injectable, UnauthorizedException } from '@nestjs/common';
import { ConfigType } from '@nestjs/config';
import { createHash, timingSafeEqual } from 'crypto';
import type { IncomingMessage } from 'http';
import { agentConfig } from '../config/agent.config';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** With AGENT_TOKEN set, requires `Authorization: Bearer <token>` (compared in constant time). */
@Injectable()
export class AgentTokenGuard implements CanActivate {
  private readonly expected: Buffer | null;

  constructor(@Inject(agentConfig.KEY) cfg: ConfigType<typeof agentConfig>) {
    this.expected = cfg.agentToken ? digest(cfg.agentToken) : null;
  }

  canActivate(ctx: ExecutionContext): boolean {
    if (!this.expected) return true;
    const header = ctx.switchToHttp().getRequest<IncomingMessage>().headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m && timingSafeEqual(digest(m[1]), this.expected)) return true;
    throw new UnauthorizedException('missing or wrong bearer token (AGENT_TOKEN)');
  }
}
