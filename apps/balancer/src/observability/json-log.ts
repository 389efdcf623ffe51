import type { LogLevel } from '../config/balancer-config';

/** Nest's levels (config LOG_LEVEL) in order of verbosity; 'log' is written as "info". */
const RANK: Record<LogLevel, number> = { error: 0, warn: 1, log: 2, debug: 3, verbose: 4 };
const NAME: Record<LogLevel, string> = {
  error: 'error',
  warn: 'warn',
  log: 'info',
  debug: 'debug',
  verbose: 'verbose',
};

/** Strings with a lone surrogate, made well-formed (U+FFFD for the lone half). */
function wellFormed(_key: string, v: unknown): unknown {
  return typeof v === 'string' ? toWellFormed(v) : v;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

export function toWellFormed(s: string): string {
  return s.replace(LONE_SURROGATE, '\ufffd');
}

export type JsonLogWrite = (line: string) => void;

/**
 * Structured lines for machines: one JSON object per line on stdout, no colours, no Nest prefix,
 * `{"level":"info","time":"…","event":"request",…}`. Callers pass only what may be logged: never a
 * prompt, a body, an Authorization header or a key.
 */
export class JsonLog {
  private readonly max: number;
  constructor(
    level: LogLevel,
    private readonly write: JsonLogWrite = (line) => process.stdout.write(line),
  ) {
    this.max = RANK[level] ?? RANK.log;
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] <= this.max;
  }

  line(level: LogLevel, event: string, fields: Record<string, unknown>): void {
    if (RANK[level] > this.max) return;
    let rest = JSON.stringify(fields);
    // JSON.stringify writes a lone surrogate (a client's model name may hold one) as \udxxx, which
    // strict parsers (Go, serde) reject: such strings are logged with U+FFFD in its place.
    if (rest.includes('\\ud')) rest = JSON.stringify(fields, wellFormed);
    const tail = rest === '{}' ? '}' : `,${rest.slice(1)}`;
    this.write(
      `{"level":"${NAME[level]}","time":"${new Date().toISOString()}","event":${JSON.stringify(event)}${tail}\n`,
    );
  }
}
