import { execFileSync } from 'child_process';
import { mkdtempSync, readFileSync } from 'fs';
import * as http from 'http';
import * as https from 'https';
import { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';

/**
 * A minimal Ollama stand-in for behaviours the simulator does not have (a TLS listener, an answer
 * that depends on the prompt, a route it lacks). It answers /api/version, /api/tags, /api/ps and
 * a one-line /api/generate and /api/chat; `handle` may take any request first (return true when it
 * answered).
 */
export interface FakeOllama {
  url: string;
  /** Every request seen, as "METHOD /path". */
  seen: string[];
  close(): Promise<void>;
}

export interface FakeOllamaOptions {
  models?: string[];
  /** What /api/version reports (default 0.12.3). */
  version?: string;
  tls?: { key: string; cert: string };
  handle?: (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) => boolean;
}

export async function startFakeOllama(opts: FakeOllamaOptions = {}): Promise<FakeOllama> {
  const models = opts.models ?? ['llama3.2:latest'];
  const seen: string[] = [];
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = (req.url ?? '/').split('?')[0];
      seen.push(`${req.method} ${path}`);
      if (opts.handle?.(req, body, res)) return;
      const json = (status: number, obj: unknown) => {
        const text = JSON.stringify(obj);
        res.writeHead(status, {
          'Content-Type': 'application/json; charset=utf-8',
          'Content-Length': Buffer.byteLength(text),
        });
        res.end(text);
      };
      if (path === '/api/version') return json(200, { version: opts.version ?? '0.12.3' });
      if (path === '/api/tags')
        return json(200, {
          models: models.map((name) => ({ name, model: name, size: 1_000_000, modified_at: '2026-01-01T00:00:00Z' })),
        });
      if (path === '/api/ps') return json(200, { models: [] });
      if (path === '/api/generate' || path === '/api/chat') {
        let model = '';
        try {
          model = JSON.parse(body.toString('utf8')).model;
        } catch {
          return json(400, { error: 'invalid JSON' });
        }
        const reply = path === '/api/chat' ? { message: { role: 'assistant', content: 'ok' } } : { response: 'ok' };
        return json(200, { model, created_at: new Date().toISOString(), ...reply, done: true, done_reason: 'stop' });
      }
      res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 18 });
      res.end('404 page not found');
    });
  };
  const server = opts.tls
    ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, onRequest)
    : http.createServer(onRequest);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A self-signed certificate for 127.0.0.1, made with openssl at test time. */
export function selfSignedCert(): { key: string; cert: string; certPath: string } {
  const dir = mkdtempSync(join(tmpdir(), 'balancer-tls-'));
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { key: readFileSync(keyPath, 'utf8'), cert: readFileSync(certPath, 'utf8'), certPath };
}
