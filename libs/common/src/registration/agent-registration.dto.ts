// class-transformer reads design metadata: make sure the polyfill is there even outside Nest.
import 'reflect-metadata';
import { plainToInstance } from 'class-transformer';
import {
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateBy,
  ValidationError,
  validateSync,
} from 'class-validator';

/**
 * The wire contract between a gpu-agent and the balancer for agent registration (the agent calls
 * out, so it works from behind NAT):
 *
 *   POST   /balancer/registry/agents          Authorization: Bearer <REGISTRATION_TOKEN>
 *          body AgentRegistrationDto           -> 200 AgentRegistrationAcceptedDto
 *          The same call is the heartbeat: the agent repeats it every heartbeatIntervalMs; a
 *          registration not repeated within ttlMs is dropped (drained, never cut).
 *   DELETE /balancer/registry/agents/<name>   Authorization: Bearer <REGISTRATION_TOKEN>
 *          -> 204 (also when unknown). Sent on SIGTERM; the backend is drained.
 *
 * Errors are Ollama-shaped {"error": "..."}: 400 (body invalid), 401 (token missing or wrong),
 * 404 (registration off on that balancer: no REGISTRATION_TOKEN), 409 (the name is registered
 * with other URLs by another registrant), 429 (too many registered backends).
 */
export const AGENT_REGISTRATION_PATH = '/balancer/registry/agents';

/** A backend name: what X-Balancer-Backend, metrics and the admin API show. */
export const BACKEND_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * An http(s) base URL the balancer can connect to: a host, an optional port, no credentials, no
 * query or fragment, no path beyond '/'. Returns the reason it is not, or null.
 */
export function httpBaseUrlProblem(value: unknown): string | null {
  if (typeof value !== 'string' || value.length === 0) return 'must be a URL';
  if (value.length > 2048) return 'is longer than 2048 characters';
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return 'is not a URL';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must use http:// or https://';
  if (u.hostname === '') return 'has no host';
  if (u.username || u.password) return 'must not carry credentials';
  if (u.search || u.hash) return 'must not have a query or fragment';
  if (u.pathname !== '/' && u.pathname !== '') return 'must not have a path';
  return null;
}

function IsHttpBaseUrl(): PropertyDecorator {
  return ValidateBy({
    name: 'isHttpBaseUrl',
    validator: {
      validate: (v: unknown) => httpBaseUrlProblem(v) === null,
      defaultMessage: (args) => `$property ${httpBaseUrlProblem(args?.value) ?? 'is invalid'}`,
    },
  });
}

export class AgentRegistrationDto {
  /** The backend's name; the registrant that first claims it owns its URLs. */
  @IsString()
  @Matches(BACKEND_NAME_PATTERN, { message: 'name must be 1-64 characters of letters, digits, . _ -' })
  name!: string;
  /** Where the balancer reaches this agent's Ollama server. */
  @IsHttpBaseUrl() ollamaUrl!: string;
  /** Where the balancer reaches the agent itself (GET /status). */
  @IsOptional() @IsHttpBaseUrl() agentUrl?: string;
  /** The server's OLLAMA_NUM_PARALLEL, when the agent knows it. */
  @IsOptional() @IsInt() @Min(1) @Max(1024) parallel?: number;
  /** The server's OLLAMA_MAX_LOADED_MODELS, when the agent knows it (0 = unknown). */
  @IsOptional() @IsInt() @Min(0) @Max(1024) maxLoadedModels?: number;
  @IsOptional() @IsString() @MaxLength(64) agentVersion?: string;
}

export class AgentRegistrationAcceptedDto {
  @IsString() @Matches(BACKEND_NAME_PATTERN) name!: string;
  /** How often the agent should repeat its registration. */
  @IsInt() @Min(1) heartbeatIntervalMs!: number;
  /** A registration not repeated for this long is dropped (drained). */
  @IsInt() @Min(1) ttlMs!: number;
}

function describeErrors(errors: ValidationError[], prefix = ''): string[] {
  return errors.flatMap((e) => {
    const at = prefix ? `${prefix}.${e.property}` : e.property;
    // class-validator's messages start with the property's name; nested ones get their path.
    const own = Object.values(e.constraints ?? {}).map((m) => (prefix ? `${prefix}.${m}` : m));
    return [...own, ...describeErrors(e.children ?? [], at)];
  });
}

function parseWith<T extends object>(
  cls: new () => T,
  json: unknown,
  what: string,
  forbidUnknown: boolean,
): { ok: true; value: T } | { ok: false; error: string } {
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    return { ok: false, error: `${what} must be a JSON object` };
  const value = plainToInstance(cls, json);
  const errors = validateSync(value, {
    whitelist: true,
    forbidNonWhitelisted: forbidUnknown,
    forbidUnknownValues: true,
  });
  if (errors.length) return { ok: false, error: describeErrors(errors).join('; ') };
  return { ok: true, value };
}

/** The balancer's check of a registration body: unknown fields are refused, so a typo is not silently ignored. */
export function parseAgentRegistration(json: unknown) {
  return parseWith(AgentRegistrationDto, json, 'a registration', true);
}

/** The agent's check of the balancer's answer: unknown fields are dropped, so newer balancers stay readable. */
export function parseAgentRegistrationAccepted(json: unknown) {
  return parseWith(AgentRegistrationAcceptedDto, json, 'the registration answer', false);
}
