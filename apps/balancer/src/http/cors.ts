/**
 * CORS for the answers the balancer writes itself (merged views, errors), as an Ollama server
 * writes them: Ollama's default allowed origins (localhost, 127.0.0.1 and 0.0.0.0 on any port over
 * http or https, and the app schemes), plus OLLAMA_ORIGINS, the same setting with the same
 * wildcards Ollama reads. Proxied answers keep the backend's own headers.
 */
const DEFAULT_ORIGINS = [
  'http://localhost',
  'https://localhost',
  'http://localhost:*',
  'https://localhost:*',
  'http://127.0.0.1',
  'https://127.0.0.1',
  'http://127.0.0.1:*',
  'https://127.0.0.1:*',
  'http://0.0.0.0',
  'https://0.0.0.0',
  'http://0.0.0.0:*',
  'https://0.0.0.0:*',
  'app://*',
  'file://*',
  'tauri://*',
  'vscode-webview://*',
  'vscode-file://*',
];

let patterns: RegExp[] = compile([]);
let any = false;

function compile(extra: string[]): RegExp[] {
  return [...DEFAULT_ORIGINS, ...extra].map(
    (p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`),
  );
}

/** OLLAMA_ORIGINS from the configuration ('*' allows every origin, as in Ollama). */
export function setAllowedOrigins(extra: string[]): void {
  any = extra.includes('*');
  patterns = compile(extra.filter((o) => o !== '*'));
}

/** The Access-Control-Allow-Origin to answer an origin with, or null when it is not allowed. */
export function allowedOrigin(origin: string | string[] | undefined): string | null {
  if (typeof origin !== 'string' || origin === '') return null;
  if (any) return '*';
  for (const p of patterns) if (p.test(origin)) return origin;
  return null;
}

/** Adds CORS headers for the request's Origin to headers the balancer is about to write. */
export function addCorsHeaders(
  origin: string | string[] | undefined,
  headers: Record<string, string | number | string[]>,
): void {
  const allowed = allowedOrigin(origin);
  if (allowed === null) return;
  headers['Access-Control-Allow-Origin'] = allowed;
  if (allowed !== '*') headers['Vary'] = 'Origin';
}
