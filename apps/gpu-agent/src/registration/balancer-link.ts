import { AGENT_REGISTRATION_PATH, AgentRegistrationDto, parseAgentRegistrationAccepted } from '@app/common';

/** What an operator sees of one balancer's registration in GET /status. */
export interface BalancerLinkState {
  balancerUrl: string;
  /** registering: not yet accepted; registered: the latest heartbeat was accepted; retrying: it failed, backing off. */
  state: 'registering' | 'registered' | 'retrying' | 'stopped';
  lastError: string | null;
  lastAcceptedAt: string | null;
  /** Attempts failed in a row (0 while registered). */
  failures: number;
  heartbeatIntervalMs: number | null;
  ttlMs: number | null;
}

export interface BalancerLinkOptions {
  balancerUrl: string;
  token: string;
  body: AgentRegistrationDto;
  retryMaxMs: number;
  timeoutMs: number;
  /** Called on every change worth a log line (first failure of a streak, recovery). */
  log: (level: 'log' | 'warn' | 'debug', message: string) => void;
  /** Jitter source, replaceable in tests; defaults to Math.random. */
  random?: () => number;
}

/** Bounds on the interval a balancer may ask for: never a hot loop, never silence beyond 10 min. */
const MIN_HEARTBEAT_MS = 50;
const MAX_HEARTBEAT_MS = 600_000;
const FIRST_RETRY_MS = 1000;

/**
 * The agent's registration with one balancer: register, repeat it as the heartbeat at the interval
 * the balancer answers with, back off (exponential, jittered, capped at retryMaxMs) while the
 * balancer is down or refuses, and deregister on stop. One request at a time, one timer; nothing
 * here throws out of the loop, so a balancer outage can never take the agent down.
 */
export class BalancerLink {
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private readonly abort = new AbortController();
  private stopped = false;
  private everAccepted = false;
  private readonly random: () => number;
  readonly status: BalancerLinkState;

  constructor(private readonly opts: BalancerLinkOptions) {
    this.random = opts.random ?? Math.random;
    this.status = {
      balancerUrl: opts.balancerUrl,
      state: 'registering',
      lastError: null,
      lastAcceptedAt: null,
      failures: 0,
      heartbeatIntervalMs: null,
      ttlMs: null,
    };
  }

  start(): void {
    this.schedule(0);
  }

  /** Next attempt's delay after `failures` failures in a row: 1 s, 2 s, 4 s ... up to retryMaxMs, with jitter in [50 %, 100 %]. */
  backoffMs(failures: number): number {
    const cap = this.opts.retryMaxMs;
    const base = Math.min(cap, Math.min(FIRST_RETRY_MS, cap) * 2 ** Math.min(failures - 1, 30));
    return Math.max(1, Math.round(base * (0.5 + 0.5 * this.random())));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.inFlight = this.attempt().finally(() => (this.inFlight = null));
    }, ms);
    // The heartbeat must not keep a process alive that is otherwise done.
    this.timer.unref();
  }

  private async attempt(): Promise<void> {
    let next: number;
    try {
      const accepted = await this.register();
      if (!this.everAccepted || this.status.state !== 'registered') {
        this.opts.log(
          'log',
          `registered with ${this.opts.balancerUrl} as ${accepted.name} (heartbeat every ${accepted.heartbeatIntervalMs} ms, dropped after ${accepted.ttlMs} ms without one)`,
        );
      }
      this.everAccepted = true;
      Object.assign(this.status, {
        state: 'registered',
        lastError: null,
        lastAcceptedAt: new Date().toISOString(),
        failures: 0,
        heartbeatIntervalMs: accepted.heartbeatIntervalMs,
        ttlMs: accepted.ttlMs,
      });
      next = Math.min(MAX_HEARTBEAT_MS, Math.max(MIN_HEARTBEAT_MS, accepted.heartbeatIntervalMs));
    } catch (e) {
      if (this.stopped) return;
      const failure = e instanceof RegistrationRefused ? e : null;
      const message = (e as Error).message;
      this.status.failures += 1;
      this.status.state = 'retrying';
      // A refusal (bad token, registration off, a name conflict) will not heal by itself quickly:
      // wait the longest interval between tries rather than hammering the balancer.
      next = failure?.permanent ? this.opts.retryMaxMs : this.backoffMs(this.status.failures);
      const first = this.status.lastError !== message;
      this.status.lastError = message;
      this.opts.log(
        first ? 'warn' : 'debug',
        `registration with ${this.opts.balancerUrl} failed (${this.status.failures} in a row): ${message}; next try in ${next} ms`,
      );
    }
    this.schedule(next);
  }

  private async register(): Promise<{ name: string; heartbeatIntervalMs: number; ttlMs: number }> {
    const res = await this.request(
      'POST',
      `${this.opts.balancerUrl}${AGENT_REGISTRATION_PATH}`,
      JSON.stringify(this.opts.body),
    );
    const text = await res.text();
    if (!res.ok) throw RegistrationRefused.from(res.status, text);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new Error(`HTTP ${res.status} with a body that is not JSON`);
    }
    const parsed = parseAgentRegistrationAccepted(json);
    if (!parsed.ok) throw new Error(`unexpected answer: ${parsed.error}`);
    return parsed.value;
  }

  private request(method: string, url: string, body?: string): Promise<Response> {
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.opts.timeoutMs)]);
    const headers: Record<string, string> = { authorization: `Bearer ${this.opts.token}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return fetch(url, { method, headers, body, signal, redirect: 'error' }).catch((e: Error) => {
      // fetch's "fetch failed" hides the reason (ECONNREFUSED, ENOTFOUND...) in cause.
      const cause = (e as Error & { cause?: { code?: string; message?: string } }).cause;
      throw new Error(
        e.name === 'TimeoutError'
          ? `no answer within ${this.opts.timeoutMs} ms`
          : (cause?.code ?? cause?.message ?? e.message),
      );
    });
  }

  /**
   * Stops heartbeating and, if this balancer ever accepted the registration, deregisters (one
   * DELETE, best effort, within timeoutMs capped at 2 s so shutdown is not held up).
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.abort.abort();
    await this.inFlight?.catch(() => undefined);
    this.status.state = 'stopped';
    if (!this.everAccepted) return;
    const url = `${this.opts.balancerUrl}${AGENT_REGISTRATION_PATH}/${encodeURIComponent(this.opts.body.name)}`;
    try {
      const res = await fetch(url, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${this.opts.token}` },
        signal: AbortSignal.timeout(Math.min(this.opts.timeoutMs, 2000)),
        redirect: 'error',
      });
      await res.body?.cancel();
      this.opts.log(res.ok ? 'log' : 'warn', `deregistered from ${this.opts.balancerUrl}: HTTP ${res.status}`);
    } catch (e) {
      this.opts.log(
        'warn',
        `could not deregister from ${this.opts.balancerUrl} (${(e as Error).message}); it drops this agent when the heartbeats stop`,
      );
    }
  }
}

/** The balancer answered, and said no. */
export class RegistrationRefused extends Error {
  override readonly name = 'RegistrationRefused';
  constructor(
    message: string,
    readonly status: number,
    readonly permanent: boolean,
  ) {
    super(message);
  }

  static from(status: number, body: string): RegistrationRefused {
    let detail = '';
    try {
      const e = (JSON.parse(body) as { error?: unknown }).error;
      if (typeof e === 'string') detail = `: ${e.slice(0, 200)}`;
    } catch {
      // not JSON: the status says enough
    }
    const why: Record<number, string> = {
      400: 'the balancer refused the registration body',
      401: 'the balancer refused the registration token (REGISTRATION_TOKEN)',
      403: 'the balancer refused the registration token (REGISTRATION_TOKEN)',
      404: 'registration is off on that balancer (no REGISTRATION_TOKEN there) or the URL is not a balancer',
      409: 'the name is registered with other URLs (AGENT_NAME)',
      429: 'the balancer holds as many registered backends as it allows',
    };
    const permanent = status >= 400 && status < 500 && status !== 408;
    return new RegistrationRefused(
      `${why[status] ?? 'the balancer answered'} (HTTP ${status})${detail}`,
      status,
      permanent,
    );
  }
}
