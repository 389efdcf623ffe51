/**
 * JSON text as a client may really send it: objects as ordered entry lists (duplicate and
 * case-variant keys survive), raw number text (1e400, 30 digits), strings with lone surrogates
 * (escaped, valid JSON) or with raw bytes that are not UTF-8. JSON.stringify can express none of these.
 */
export type Json =
  | { t: 'obj'; e: [string, Json][] }
  | { t: 'arr'; v: Json[] }
  | { t: 'str'; s: string }
  | { t: 'num'; n: number }
  | { t: 'raw'; s: string }
  | { t: 'lit'; v: null | boolean }
  /** A string literal holding these bytes as they are (0x80-0xff alone are not UTF-8). */
  | { t: 'bytes'; b: number[] }
  /** `depth` arrays inside each other around `inner` (built lazily: the AST stays small). */
  | { t: 'nest'; depth: number; open: '[' | '{'; inner: Json };

export const obj = (e: [string, Json][]): Json => ({ t: 'obj', e });
export const arr = (v: Json[]): Json => ({ t: 'arr', v });
export const str = (s: string): Json => ({ t: 'str', s });
export const num = (n: number): Json => ({ t: 'num', n });
export const lit = (v: null | boolean): Json => ({ t: 'lit', v });
export const raw = (s: string): Json => ({ t: 'raw', s });

/** Plain JS data (from fixtures) as a Json tree. */
export function fromValue(v: unknown): Json {
  if (v === null || v === undefined) return lit(null);
  if (typeof v === 'boolean') return lit(v);
  if (typeof v === 'number') return num(v);
  if (typeof v === 'string') return str(v);
  if (Array.isArray(v)) return arr(v.map(fromValue));
  return obj(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, fromValue(x)]));
}

export function toBytes(j: Json): Buffer {
  const parts: (string | Buffer)[] = [];
  write(j, parts);
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
}

function write(j: Json, out: (string | Buffer)[]): void {
  switch (j.t) {
    case 'obj':
      out.push('{');
      j.e.forEach(([k, v], i) => {
        if (i > 0) out.push(',');
        out.push(JSON.stringify(k), ':');
        write(v, out);
      });
      out.push('}');
      return;
    case 'arr':
      out.push('[');
      j.v.forEach((v, i) => {
        if (i > 0) out.push(',');
        write(v, out);
      });
      out.push(']');
      return;
    case 'str':
      // JSON.stringify escapes a lone surrogate as \udxxx: valid JSON text that decodes to it.
      out.push(JSON.stringify(j.s));
      return;
    case 'num':
      out.push(Number.isFinite(j.n) ? JSON.stringify(j.n) : '0');
      return;
    case 'raw':
      out.push(j.s);
      return;
    case 'lit':
      out.push(JSON.stringify(j.v));
      return;
    case 'bytes':
      out.push('"', Buffer.from(j.b), '"');
      return;
    case 'nest': {
      const close = j.open === '[' ? ']' : '}';
      const openText = j.open === '[' ? '[' : '{"a":';
      out.push(openText.repeat(j.depth));
      write(j.inner, out);
      out.push(close.repeat(j.depth));
      return;
    }
  }
}

/** A short description of a tree for reports (no huge strings). */
export function describe(j: Json, budget = 300): string {
  const s = toBytes(j).toString('latin1');
  return s.length > budget ? `${s.slice(0, budget)}… (${s.length} bytes)` : s;
}
