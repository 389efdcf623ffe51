/** External peers the balancer is compared with: nginx and HAProxy, each with a generated config in a temp dir. */
import { mkdirSync, writeFileSync } from 'fs';
import { join } from 'path';
import { Child, startChild, waitFor, which } from './procs';

export interface Upstream {
  name: string;
  port: number;
  /** HAProxy per-server maxconn (its proxy-side queue holds the rest). */
  maxconn?: number;
  /** nginx `weight=` (least_conn then compares connections / weight). */
  weight?: number;
}

export interface NginxPool {
  /** Port nginx listens on for this pool. */
  listen: number;
  method: 'round-robin' | 'least_conn';
  servers: Upstream[];
}

export const NGINX_INSTALL_HINT =
  'nginx not found: install it with `apt-get install -y nginx` (or run tools/bench/ensure-peers.sh)';
export const HAPROXY_INSTALL_HINT =
  'haproxy not found: install it with `apt-get install -y haproxy` (or run tools/bench/ensure-peers.sh)';

/** nginx as users deploy it in front of HTTP backends: upstream keep-alive, no buffering (streams pass through). */
export function nginxConfig(dir: string, pools: NginxPool[]): string {
  const tmp = (n: string): string => join(dir, n);
  const upstreams = pools
    .map(
      (p, i) => `  upstream pool${i} {
${p.method === 'least_conn' ? '    least_conn;\n' : ''}${p.servers.map((s) => `    server 127.0.0.1:${s.port}${s.weight && s.weight !== 1 ? ` weight=${s.weight}` : ''};`).join('\n')}
    keepalive 64;
  }`,
    )
    .join('\n');
  const servers = pools
    .map(
      (p, i) => `  server {
    listen 127.0.0.1:${p.listen} backlog=4096;
    location / {
      proxy_pass http://pool${i};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
      proxy_send_timeout 600s;
      add_header X-Upstream $upstream_addr always;
    }
  }`,
    )
    .join('\n');
  return `worker_processes auto;
worker_rlimit_nofile 16384;
pid ${tmp('nginx.pid')};
error_log ${tmp('error.log')} warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${tmp('body')};
  proxy_temp_path ${tmp('proxy')};
  fastcgi_temp_path ${tmp('fastcgi')};
  uwsgi_temp_path ${tmp('uwsgi')};
  scgi_temp_path ${tmp('scgi')};
  keepalive_requests 100000;
  keepalive_timeout 65s;
${upstreams}
${servers}
}
`;
}

export async function startNginx(dir: string, pools: NginxPool[]): Promise<Child> {
  const bin = which('nginx');
  if (!bin) throw new Error(NGINX_INSTALL_HINT);
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, pools));
  const child = startChild('nginx', bin, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log'), '-g', 'daemon off;']);
  for (const p of pools) await waitFor(`http://127.0.0.1:${p.listen}/api/version`, child, 10_000);
  return child;
}

/** HAProxy with leastconn and a per-server maxconn: excess requests wait in HAProxy's queue, not in Ollama's. */
export function haproxyConfig(listen: number, servers: Upstream[]): string {
  return `global
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout queue 300s
  option http-keep-alive
  # Forward each streamed chunk at once (as nginx does with proxy_buffering off).
  option http-no-delay
frontend fe
  bind 127.0.0.1:${listen}
  default_backend be
backend be
  balance leastconn
  http-response set-header X-Upstream %[srv_name]
${servers.map((s) => `  server ${s.name} 127.0.0.1:${s.port}${s.maxconn ? ` maxconn ${s.maxconn}` : ''}`).join('\n')}
`;
}

export async function startHaproxy(dir: string, listen: number, servers: Upstream[]): Promise<Child> {
  const bin = which('haproxy');
  if (!bin) throw new Error(HAPROXY_INSTALL_HINT);
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'haproxy.cfg');
  writeFileSync(conf, haproxyConfig(listen, servers));
  const child = startChild('haproxy', bin, ['-f', conf, '-db']);
  await waitFor(`http://127.0.0.1:${listen}/api/version`, child, 10_000);
  return child;
}

export const REDIS_INSTALL_HINT =
  'redis-server not found: install it with `bash scripts/ensure-redis.sh` (Debian: apt-get install -y redis-server)';

/** A throw-away redis-server (nothing saved) for the balancer replicas' shared state. */
export async function startRedis(port: number): Promise<Child> {
  const bin = which('redis-server');
  if (!bin) throw new Error(REDIS_INSTALL_HINT);
  const c = startChild('redis-server', bin, [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--protected-mode',
    'no',
    '--loglevel',
    'warning',
  ]);
  const net = await import('net');
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
      s.setTimeout(1000, () => (s.destroy(), resolve(false)));
      s.once('error', () => resolve(false));
      s.once('data', (d) => (s.destroy(), resolve(d.toString().startsWith('+PONG'))));
    });
    if (ok) return c;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer: ${c.tail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
