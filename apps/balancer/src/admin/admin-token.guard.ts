import {
  CanActivate,
  ExecutionContext,
  ForbiddenException,
  Inject,
  Injectable,
  UnauthorizedException,
} from '@nestjs/common';
import type { Request } from 'express';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { AccessControl, tokenMatches } from '../proxy/access-control';

/** Admin endpoints need ADMIN_TOKEN; with none configured they are off, not open. */
@Injectable()
export class AdminTokenGuard implements CanActivate {
  private readonly token: Buffer | null;
  constructor(@Inject(BALANCER_CONFIG) config: BalancerConfig) {
    this.token = config.adminToken ? Buffer.from(config.adminToken) : null;
  }
  canActivate(ctx: ExecutionContext): boolean {
    if (this.token === null) throw new ForbiddenException('the admin API is disabled: set ADMIN_TOKEN to enable it');
    if (!this.matches(ctx.switchToHttp().getRequest<Request>()))
      throw new UnauthorizedException('admin token required: Authorization: Bearer <ADMIN_TOKEN>');
    return true;
  }
  matches(req: Request): boolean {
    return tokenMatches(req, this.token);
  }
}

/**
 * Read-only views (status, dashboard, its event feed): behind ADMIN_TOKEN when one is set; else
 * behind any valid client API key when keys are configured; else open.
 */
@Injectable()
export class ViewGuard implements CanActivate {
  constructor(
    @Inject(BALANCER_CONFIG) private readonly config: BalancerConfig,
    private readonly admin: AdminTokenGuard,
    private readonly access: AccessControl,
  ) {}
  canActivate(ctx: ExecutionContext): boolean {
    const req = ctx.switchToHttp().getRequest<Request>();
    const q = typeof req.query?.token === 'string' ? req.query.token : null;
    if (q !== null) req.headers.authorization = `Bearer ${q}`;
    if (this.config.adminToken) {
      if (!this.admin.matches(req))
        throw new UnauthorizedException('admin token required: Authorization: Bearer <ADMIN_TOKEN>');
      return true;
    }
    // No admin token but client keys configured: the views show backend URLs, so a client key is needed.
    if (this.access.enabled && !this.access.isValidKey(req))
      throw new UnauthorizedException('API key required: Authorization: Bearer <key>');
    return true;
  }
}
