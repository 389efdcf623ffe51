import { Controller, Get, Req, UnauthorizedException } from '@nestjs/common';
import type { Request } from 'express';
import { AccessControl } from '../proxy/access-control';
import { UsageService } from '../usage/usage.service';

/**
 * GET /balancer/usage: token usage and quotas per API key. The admin token sees every key; a client
 * key sees only itself (so a team can watch its own quota); nothing else gets in.
 */
@Controller('balancer')
export class UsageController {
  constructor(
    private readonly usage: UsageService,
    private readonly access: AccessControl,
  ) {}

  @Get('usage')
  async getUsage(@Req() req: Request) {
    let only: string | undefined;
    if (!this.access.isAdminToken(req)) {
      const name = this.access.presentedKeyName(req);
      if (name === null)
        throw new UnauthorizedException(
          'the admin token or an API key is required: Authorization: Bearer <token or key>, or X-API-Key',
        );
      only = name;
    }
    // One process: this replica's ledger, as always. With REDIS_URL: every replica's usage (scope
    // 'global'), or this replica's (scope 'replica') while Redis is away.
    if (!this.usage.sharedState) return { time: new Date().toISOString(), keys: this.usage.view(only) };
    const { scope, keys } = await this.usage.globalView(only);
    return { time: new Date().toISOString(), scope, keys };
  }
}
