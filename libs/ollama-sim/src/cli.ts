#!/usr/bin/env node
import { readFileSync } from 'fs';
import type { SimConfig } from './config';
import { startSimServer } from './server';

const USAGE = 'usage: ollama-sim --port <port> [--config <file.json>] [--host <host>]';

function parseArgs(argv: string[]): { port: number; host?: string; config?: string } {
  const out: { port: number; host?: string; config?: string } = { port: 11434 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    if (flag === '--port' || flag === '-p') {
      const p = Number(value());
      if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error(`--port must be 0..65535\n${USAGE}`);
      out.port = p;
    } else if (flag === '--host') out.host = value();
    else if (flag === '--config' || flag === '-c') out.config = value();
    else if (flag === '--help' || flag === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  let config: SimConfig = {};
  if (args.config) {
    try {
      config = JSON.parse(readFileSync(args.config, 'utf8')) as SimConfig;
    } catch (e) {
      throw new Error(`cannot read config ${args.config}: ${(e as Error).message}`);
    }
  }
  const sim = await startSimServer({ ...config, port: args.port, host: args.host });
  process.stdout.write(`ollama-sim ${sim.config().name} listening on ${sim.url}\n`);
  const stop = (signal: string): void => {
    process.stderr.write(`ollama-sim: ${signal}, stopping\n`);
    void sim.close().then(() => process.exit(0));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e: Error) => {
  process.stderr.write(`ollama-sim: ${e.message}\n`);
  process.exit(1);
});
