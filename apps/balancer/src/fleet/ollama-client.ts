import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import * as http from 'http';
import * as https from 'https';
import { rootCertificates } from 'tls';
import { BALANCER_CONFIG, BalancerConfig } from '../config/balancer-config';
import type { Backend } from './backend';

export interface UpstreamResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface UpstreamOptions {
  method?: string;
  body?: Buffer | string;
  timeoutMs: number;
  headers?: Record<string, string>;
  /** Called with each chunk instead of buffering (streamed fan-out). */
  onChunk?: (chunk: Buffer) => void;
  maxBytes?: number;
  /** Which socket pool: 'probe' for short reads, 'control' for the rest (default: by method). */
  pool?: 'probe' | 'control';
}

/** TLS options for https backends and agents: the system's certificates plus BACKEND_CA_FILE. */
export function backendTlsOptions(ca: string | undefined): https.AgentOptions {
  return ca === undefined ? {} : { ca: [...rootCertificates, ca] };
}

/** The port a backend URL means: its own, else its scheme's (Node's URL drops :80 and :443). */
export function portOf(u: URL): number {
  return u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
}

/**
 * The balancer's one HTTP client for its own calls to Ollama servers and their gpu-agents: health
 * probes, inventory, merged views and model-management fan-out (proxied model requests go through
 * proxy/upstream-attempt.ts). Only ever to a configured address, never one a client supplied. One
 * keep-alive agent per app, closed with it.
 */
@Injectable()
export class OllamaClient implements OnApplicationShutdown {
  /**
   * Two socket pools per scheme. Probes (health, inventory, agents: short GETs) have theirs, so a
   * probe never waits for a socket behind long pulls, creates, preloads or blob uploads, which use
   * the other. https backends and agents get TLS, verified (system certificates + BACKEND_CA_FILE).
   */
  private readonly pools: Record<'http:' | 'https:', { probe: http.Agent; control: http.Agent }>;

  constructor(@Inject(BALANCER_CONFIG) config: BalancerConfig) {
    const tls = backendTlsOptions(config.backendCa);
    this.pools = {
      'http:': {
        probe: new http.Agent({ keepAlive: true, maxSockets: 8, maxFreeSockets: 8 }),
        control: new http.Agent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 16 }),
      },
      'https:': {
        probe: new https.Agent({ keepAlive: true, maxSockets: 8, maxFreeSockets: 8, ...tls }),
        control: new https.Agent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 16, ...tls }),
      },
    };
  }

  /** One request to a configured backend. */
  backend(b: Backend, path: string, opts: UpstreamOptions): Promise<UpstreamResponse> {
    return this.request(b.url, path, opts);
  }

  /** One request to a configured origin (a backend or its gpu-agent). */
  request(origin: URL | string, path: string, opts: UpstreamOptions): Promise<UpstreamResponse> {
    const u = typeof origin === 'string' ? new URL(origin) : origin;
    return new Promise((resolve, reject) => {
      const body =
        opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body);
      const headers: Record<string, string> = { host: u.host, accept: 'application/json', ...opts.headers };
      if (body !== undefined) {
        headers['content-type'] ??= 'application/json';
        headers['content-length'] = String(body.length);
      }
      const hostname = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
      const secure = u.protocol === 'https:';
      const method = opts.method ?? 'GET';
      const pool = opts.pool ?? ((method === 'GET' || method === 'HEAD') && !opts.onChunk ? 'probe' : 'control');
      const agent = this.pools[secure ? 'https:' : 'http:'][pool];
      const req = (secure ? https : http).request({ hostname, port: portOf(u), path, method, headers, agent });
      // The deadline settles the promise itself: a request still waiting for a socket would report
      // its destruction only once it got one.
      const timer = setTimeout(() => {
        reject(new Error(`timed out after ${opts.timeoutMs} ms`));
        req.destroy(new Error(`timed out after ${opts.timeoutMs} ms`));
      }, opts.timeoutMs);
      req.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.once('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const max = opts.maxBytes ?? 16 * 1024 * 1024;
        res.on('data', (c: Buffer) => {
          if (opts.onChunk) {
            timer.refresh();
            opts.onChunk(c);
            return;
          }
          size += c.length;
          if (size > max) {
            req.destroy(new Error(`response larger than ${max} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.once('end', () => {
          clearTimeout(timer);
          if (!res.complete) return reject(new Error('connection closed before the response completed'));
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
        res.once('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
      });
      req.end(body);
    });
  }

  /**
   * A request whose body the caller streams (a blob upload): write to `sink`, then end it. The
   * answer must come within `timeoutMs` of the body's end; an upload that stops is the caller's to
   * cut (BODY_TIMEOUT_MS). The sink never throws: a failure rejects `answer` and the sink is destroyed.
   */
  upload(
    origin: URL,
    path: string,
    opts: { headers: Record<string, string>; timeoutMs: number },
  ): { sink: http.ClientRequest; answer: Promise<UpstreamResponse> } {
    const hostname = origin.hostname.startsWith('[') ? origin.hostname.slice(1, -1) : origin.hostname;
    const secure = origin.protocol === 'https:';
    const agent = this.pools[secure ? 'https:' : 'http:'].control;
    const sink = (secure ? https : http).request({
      hostname,
      port: portOf(origin),
      path,
      method: 'POST',
      headers: { host: origin.host, ...opts.headers },
      agent,
    });
    sink.on('error', () => undefined);
    const answer = new Promise<UpstreamResponse>((resolve, reject) => {
      let timer: NodeJS.Timeout | null = null;
      sink.once('finish', () => {
        timer = setTimeout(() => {
          reject(new Error(`timed out after ${opts.timeoutMs} ms`));
          sink.destroy();
        }, opts.timeoutMs);
      });
      sink.once('error', (e) => {
        if (timer) clearTimeout(timer);
        reject(e);
      });
      sink.once('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
        res.once('end', () => {
          if (timer) clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
        res.once('error', (e) => {
          if (timer) clearTimeout(timer);
          reject(e);
        });
      });
    });
    return { sink, answer };
  }

  onApplicationShutdown(): void {
    for (const p of Object.values(this.pools)) {
      p.probe.destroy();
      p.control.destroy();
    }
  }
}

/** Splits NDJSON bytes into objects, carrying a partial line across chunks. */
export class NdjsonSplitter {
  private rest = '';
  push(chunk: Buffer, each: (obj: any) => void): void {
    const text = this.rest + chunk.toString('utf8');
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        each(JSON.parse(line));
      } catch {
        // not JSON: ignore the line
      }
    }
  }
  flush(each: (obj: any) => void): void {
    if (this.rest.trim() !== '') {
      try {
        each(JSON.parse(this.rest));
      } catch {
        // ignore
      }
    }
    this.rest = '';
  }
}
