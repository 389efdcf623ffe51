/**
 * Reading a client's JSON safely. Values are read only when they have the expected type (never
 * through String() or a template literal: an object with its own toString can throw), nesting is
 * bounded before JSON.parse runs, and top-level keys are read as Ollama's Go decoder reads them:
 * case-insensitively (so `MODEL` is `model`). Two keys that differ only in case are refused: Go
 * would take the last one in the text, JSON.parse keeps a different order, and the balancer must
 * never judge one model while the backend serves another.
 */

/** Deeper JSON than this is refused before it is parsed (Go's own limit is 10,000). */
export const MAX_JSON_DEPTH = 100;

/**
 * Whether the JSON text nests deeper than `max`. Counting brackets with indexOf (native) settles
 * almost every body at once; only a body with more than `max` brackets gets the exact scan.
 */
export function nestsDeeperThan(buf: Buffer, max = MAX_JSON_DEPTH): boolean {
  let n = 0;
  for (let i = buf.indexOf(0x5b); i !== -1 && n <= max; i = buf.indexOf(0x5b, i + 1)) n++;
  for (let i = buf.indexOf(0x7b); i !== -1 && n <= max; i = buf.indexOf(0x7b, i + 1)) n++;
  if (n <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** A key as Go's encoding/json folds it for matching, in lower case ('ſ' is 's', the Kelvin sign 'k'). */
export function foldKey(k: string): string {
  let out = '';
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) out += String.fromCharCode(c + 32);
    else if (c === 0x17f) out += 's';
    else if (c === 0x212a) out += 'k';
    else out += k[i];
  }
  return out;
}

function plainKey(k: string): boolean {
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c === 0x17f || c === 0x212a) return false;
  }
  return true;
}

/**
 * The object as the backend will read its top level: keys folded to lower case. Returns an error
 * message when two keys fold to the same name. The common case (every key already plain) returns
 * the object itself.
 */
export function canonicalKeys(obj: Record<string, unknown>): Record<string, unknown> | string {
  let plain = true;
  for (const k of Object.keys(obj)) {
    if (!plainKey(k)) {
      plain = false;
      break;
    }
  }
  if (plain) return obj;
  const out: Record<string, unknown> = {};
  const from = new Map<string, string>();
  for (const k of Object.keys(obj)) {
    const f = foldKey(k);
    const prev = from.get(f);
    if (prev !== undefined)
      return `keys ${JSON.stringify(prev)} and ${JSON.stringify(k)} name the same field: send it once`;
    from.set(f, k);
    Object.defineProperty(out, f, { value: obj[k], enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** The value when it is a string, else undefined. Never converts. */
export function stringOf(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** A request's model as Ollama reads it: `model`, else the older `name`; '' when neither is a string. */
export function modelField(body: Record<string, unknown>): string {
  const m = body.model;
  if (typeof m === 'string' && m !== '') return m;
  const n = body.name;
  return typeof n === 'string' ? n : typeof m === 'string' ? m : '';
}
