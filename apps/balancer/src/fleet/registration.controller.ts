import {
  BadRequestException,
  Body,
  CanActivate,
  Controller,
  Delete,
  ExecutionContext,
  HttpCode,
  HttpException,
  Inject,
  Injectable,
  NotFoundException,
  Param,
  Post,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { timingSafeEqual } from 'crypto';
import type { Request } from 'express';
import { AgentRegistrationAcceptedDto, BACKEND_NAME_PATTERN, parseAgentRegistration } from '@app/common';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import { AgentRegistrations } from './agent-registrations.service';

/** REGISTRATION_TOKEN as a Bearer token; without one configured the endpoint does not exist (404). */
@Injectable()
export class RegistrationTokenGuard implements CanActivate {
  private readonly token: Buffer | null;
  constructor(@Inject(BALANCER_CONFIG) config: BalancerConfig) {
    this.token = config.discovery.registration ? Buffer.from(config.discovery.registration.token) : null;
  }
  canActivate(ctx: ExecutionContext): boolean {
    if (this.token === null)
      throw new NotFoundException('agent registration is off on this balancer (no REGISTRATION_TOKEN)');
    const header = ctx.switchToHttp().getRequest<Request>().headers.authorization ?? '';
    const m = /^Bearer (.+)$/i.exec(header);
    const given = m ? Buffer.from(m[1].trim()) : Buffer.alloc(0);
    if (given.length !== this.token.length || !timingSafeEqual(given, this.token)) {
      throw new UnauthorizedException('registration token required: Authorization: Bearer <REGISTRATION_TOKEN>');
    }
    return true;
  }
}

/** The agents' side door into the fleet (contract: libs/common/src/registration). */
@Controller('balancer/registry/agents')
@UseGuards(RegistrationTokenGuard)
export class RegistrationController {
  constructor(private readonly registrations: AgentRegistrations) {}

  @Post()
  @HttpCode(200)
  async register(@Body() body: unknown): Promise<AgentRegistrationAcceptedDto> {
    const parsed = parseAgentRegistration(body);
    if (!parsed.ok) throw new BadRequestException(`invalid registration: ${parsed.error}`);
    const outcome = await this.registrations.register(parsed.value);
    if (outcome.status !== 200) throw new HttpException(outcome.error, outcome.status);
    return outcome.body;
  }

  @Delete(':name')
  @HttpCode(204)
  async deregister(@Param('name') name: string): Promise<void> {
    if (!BACKEND_NAME_PATTERN.test(name))
      throw new BadRequestException('name must be 1-64 characters of letters, digits, . _ -');
    await this.registrations.deregister(name);
  }
}
