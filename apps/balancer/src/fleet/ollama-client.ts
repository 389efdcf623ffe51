import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import * as http from 'http';
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
}

/**
 * The balancer's one HTTP client for its own calls to Ollama servers and their gpu-agents: health
 * probes, inventory, merged views and model-management fan-out (proxied model requests go through
 * proxy/upstream-attempt.ts). Only ever to a configured address, never one a client supplied. One
 * keep-alive agent per app, closed with it.
 */
@Injectable()
export class OllamaClient implements OnApplicationShutdown {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 16, maxFreeSockets: 16 });

  /** One request to a configured backend. */
  backend(b: Backend, path: string, opts: UpstreamOptions): Promise<UpstreamResponse> {
    return this.request(b.url, path, opts);
  }

  /** One request to a configured origin (a backend or its gpu-agent). */
  request(origin: URL | string, path: string, opts: UpstreamOptions): Promise<UpstreamResponse> {
    const u = typeof origin === 'string' ? new URL(origin) : origin;
    return new Promise((resolve, reject) => {
      const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body);
      const headers: Record<string, string> = { host: u.host, accept: 'application/json', ...opts.headers };
      if (body !== undefined) {
        headers['content-type'] ??= 'application/json';
        headers['content-length'] = String(body.length);
      }
      const hostname = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
      const req = http.request({ hostname, port: u.port || 80, path, method: opts.method ?? 'GET', headers, agent: this.agent });
      const timer = setTimeout(() => req.destroy(new Error(`timed out after ${opts.timeoutMs} ms`)), opts.timeoutMs);
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

  onApplicationShutdown(): void {
    this.agent.destroy();
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
