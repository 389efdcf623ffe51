import type { IncomingHttpHeaders, IncomingMessage } from 'http';
import type { Lease } from '../routing/lease-ledger';

/** Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus ones we set ourselves. */
const HOP_BY_HOP_REQUEST = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
];
const HOP_BY_HOP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'trailer',
  'upgrade',
  'te',
]);

/**
 * Readies the client's headers to go upstream, in place: hop-by-hop ones (the fixed set and whatever
 * Connection names) go, and so do client credentials (Authorization unless `keepAuthorization`).
 */
export function stripRequestHeaders(headers: IncomingHttpHeaders, keepAuthorization: boolean): void {
  if (headers.connection !== undefined) for (const h of connectionTokens(headers.connection)) delete headers[h];
  // Only delete what is there: deleting absent keys still costs on this per-request object.
  for (const h of HOP_BY_HOP_REQUEST) if (headers[h] !== undefined) delete headers[h];
  if (headers.authorization !== undefined && !keepAuthorization) delete headers.authorization;
  if (headers['x-api-key'] !== undefined) delete headers['x-api-key'];
}

/**
 * The headers of a model answer for its one writeHead: the backend's, less hop-by-hop ones (and
 * Content-Length when the body is re-framed), plus the balancer's own.
 */
export function responseHeaders(
  upstream: IncomingMessage,
  lease: Lease,
  attempts: number,
  queuePosition: number | undefined,
  requestId: string,
  dropLength: boolean,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const raw = upstream.rawHeaders;
  const named = connectionTokens(upstream.headers.connection);
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i];
    const lower = k.toLowerCase();
    if (
      HOP_BY_HOP_RESPONSE.has(lower) ||
      (dropLength && lower === 'content-length') ||
      (named.length > 0 && named.includes(lower))
    )
      continue;
    const prev = out[k];
    out[k] = prev === undefined ? raw[i + 1] : Array.isArray(prev) ? [...prev, raw[i + 1]] : [prev, raw[i + 1]];
  }
  out['X-Balancer-Backend'] = lease.backend.name;
  out['X-Balancer-Reason'] = lease.reason;
  out['X-Balancer-Queue-Ms'] = String(lease.queuedMs);
  if (queuePosition !== undefined) out['X-Balancer-Queue-Position'] = String(queuePosition);
  if (lease.predictedMs !== undefined) out['X-Balancer-Predicted-Ms'] = String(lease.predictedMs);
  if (attempts > 1) out['X-Balancer-Attempts'] = String(attempts);
  out['X-Request-Id'] = requestId;
  return out;
}

/** Header names listed in a Connection header (hop-by-hop by declaration, RFC 9110 7.6.1). */
function connectionTokens(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  const s = Array.isArray(v) ? v.join(',') : v;
  if (s === '' || s === 'keep-alive' || s === 'close') return [];
  return s
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '' && t !== 'close' && t !== 'keep-alive');
}
