import { ConsoleLogger, INestApplication, Logger, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Server } from 'http';
import { AppModule } from './app.module';
import { BALANCER_CONFIG, BalancerConfig, ConfigError } from './config/balancer-config';
import { Lifecycle } from './lifecycle/lifecycle';
import { ProxyService } from './proxy/proxy.service';
import { RequestRecords } from './proxy/request-records';

const LEVELS: LogLevel[] = ['error', 'warn', 'log', 'debug', 'verbose'];

export function logLevelsFrom(level: string): LogLevel[] {
  return LEVELS.slice(0, LEVELS.indexOf(level as LogLevel) + 1);
}

/**
 * Graceful drain: readiness turns 503 at once, new requests get 503 with Connection: close,
 * in-flight requests (queued ones, pulls and other fan-outs included) finish, up to
 * DRAIN_TIMEOUT_MS. Model requests still open then end with an error line (stream) or 503, and
 * the app closes.
 */
export async function drainAndClose(app: INestApplication): Promise<void> {
  const config = app.get<BalancerConfig>(BALANCER_CONFIG);
  const lifecycle = app.get(Lifecycle);
  lifecycle.advance('draining');
  const proxy = app.get(ProxyService);
  const server = app.getHttpServer() as Server;
  // Idle keep-alive connections go now, so their clients reconnect elsewhere rather than here.
  server.closeIdleConnections?.();
  const observer = app.get(RequestRecords);
  const deadline = Date.now() + config.drainTimeoutMs;
  while ((proxy.inFlightResponses > 0 || observer.open > 0) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  if (proxy.inFlightResponses > 0 || observer.open > 0) {
    new Logger('Balancer').warn(
      `drain timeout: ending ${Math.max(proxy.inFlightResponses, observer.open)} request(s) still open`,
    );
    // Moves the lifecycle to closing once its queued requests are out of the queue (they get this message).
    proxy.cutOpenResponses(`balancer is shutting down: drain timeout of ${config.drainTimeoutMs} ms reached`);
  }
  // server.close() waits for open connections: give the last bytes a moment, then cut what is left.
  const force = setTimeout(() => server.closeAllConnections?.(), 2000);
  try {
    await app.close();
  } finally {
    clearTimeout(force);
  }
}

/**
 * The last resort: an error that escaped every handler is logged and the process keeps serving
 * the streams in flight, rather than every client losing its answer. Each such log line is a bug
 * to fix where it was thrown; this guard is never the fix.
 */
export function installProcessGuard(logger: Pick<Logger, 'error'> = new Logger('ProcessGuard')): void {
  if ((process as any).__balancerGuard) return;
  (process as any).__balancerGuard = true;
  process.on('uncaughtException', (e) => logger.error(`uncaught exception (kept serving): ${describeError(e)}`));
  process.on('unhandledRejection', (e) => logger.error(`unhandled rejection (kept serving): ${describeError(e)}`));
  // A log reader that goes away (a closed pipe: EPIPE) must not stop the serving. Unheard, the write
  // error was an uncaught exception whose log line failed the same way, for ever: the event loop
  // spun at full CPU and answered nothing, not even /health/live. Lines for a dead stream are dropped.
  for (const [name, out] of [
    ['stdout', process.stdout],
    ['stderr', process.stderr],
  ] as const) {
    let told = false;
    out.on('error', (e: NodeJS.ErrnoException) => {
      if (told) return;
      told = true;
      logger.error(`${name} failed (${e.code ?? e.message}): its log lines are dropped from now on`);
    });
  }
}

function describeError(e: unknown): string {
  if (e instanceof Error)
    return `${e.name}: ${e.message}${e.stack ? ` ${e.stack.split('\n').slice(1, 4).join(' |').trim()}` : ''}`;
  try {
    return JSON.stringify(e) ?? typeof e;
  } catch {
    return typeof e;
  }
}

/** Starts the balancer as production does. Exits with a clear message on bad configuration. */
export async function startBalancer(): Promise<INestApplication> {
  let app: INestApplication;
  try {
    // The settings are read once, by BalancerConfigModule as the app is created; until LOG_LEVEL is
    // known Nest's own lines wait in a buffer.
    app = await NestFactory.create(AppModule, {
      bufferLogs: true,
      autoFlushLogs: false,
      abortOnError: false,
      bodyParser: true,
    });
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      process.exit(2);
    }
    Logger.flush();
    throw e;
  }
  const config = app.get<BalancerConfig>(BALANCER_CONFIG);
  // Plain JSON lines, like the request log: one format for log shippers, no colours.
  app.useLogger(new ConsoleLogger({ json: true, colors: false, logLevels: logLevelsFrom(config.logLevel) }));
  app.flushLogs();
  const logger = new Logger('Balancer');
  installProcessGuard();
  const discovers = config.discovery.dns.length > 0 || config.discovery.registration !== null;
  if (config.backends.length === 0 && !discovers)
    logger.warn(
      'No backends configured (OLLAMA_BACKENDS, BALANCER_CONFIG, OLLAMA_BACKENDS_DNS or REGISTRATION_TOKEN): every request will answer 503.',
    );
  await app.listen(config.port, config.host);
  logger.log(
    `Listening on http://${config.host}:${config.port} with ${config.backends.length} backend(s): ${config.backends.map((b) => `${b.name}=${b.url}`).join(', ')}; policy ${config.policy}${discovers ? '; more found at run time (DNS discovery / agent registration)' : ''}`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.log(`${signal}: draining (up to ${config.drainTimeoutMs} ms)`);
    drainAndClose(app).then(
      () => process.exit(0),
      (e) => {
        logger.error(`shutdown failed: ${(e as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return app;
}
