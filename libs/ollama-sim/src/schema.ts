/**
 * Deterministic JSON values for a JSON Schema: what a constrained model would emit for `format`
 * and for tool-call arguments. Covers what Ollama's grammar conversion handles in practice:
 * object (properties, required), array (items, prefixItems, minItems/maxItems), string (enum,
 * const, format date/date-time/time/uuid/email/uri, minLength/maxLength), number and integer
 * (minimum/maximum, exclusive bounds), boolean, null, anyOf/oneOf/allOf, $ref to $defs/definitions.
 */
import { nextRandom, randomOf, WORDS } from './text';

export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = nextRandom(this.state);
    return randomOf(this.state);
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
}

type Schema = Record<string, any>;
const MAX_DEPTH = 8;

/** A value that validates against `schema` (best effort for exotic keywords; never throws). */
export function valueForSchema(schema: unknown, rng: Rng): unknown {
  return gen(schema, rng, (schema && typeof schema === 'object' ? schema : {}) as Schema, 0);
}

function resolveRef(ref: string, root: Schema): unknown {
  const m = /^#\/(\$defs|definitions)\/(.+)$/.exec(ref);
  if (!m) return {};
  return root[m[1]]?.[decodeURIComponent(m[2])] ?? {};
}

function gen(raw: unknown, rng: Rng, root: Schema, depth: number): unknown {
  if (raw === true || raw === undefined || raw === null) return words(rng, 1, 3);
  if (typeof raw !== 'object' || Array.isArray(raw)) return null;
  const s = raw as Schema;
  if (depth > MAX_DEPTH) return null;
  if (typeof s.$ref === 'string') return gen(resolveRef(s.$ref, root), rng, root, depth + 1);
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) return rng.pick(s.enum);
  for (const key of ['anyOf', 'oneOf']) {
    if (Array.isArray(s[key]) && s[key].length > 0) {
      const options = (s[key] as unknown[]).filter(
        (o) => !(o && typeof o === 'object' && (o as Schema).type === 'null'),
      );
      return gen(options[0] ?? s[key][0], rng, root, depth + 1);
    }
  }
  if (Array.isArray(s.allOf) && s.allOf.length > 0) {
    const merged: Schema = {};
    for (const part of s.allOf) {
      const p = (part && typeof part === 'object' ? part : {}) as Schema;
      for (const [k, v] of Object.entries(p)) {
        if (k === 'properties') merged.properties = { ...(merged.properties ?? {}), ...(v as Schema) };
        else if (k === 'required') merged.required = [...(merged.required ?? []), ...(v as string[])];
        else merged[k] = v;
      }
    }
    return gen(merged, rng, root, depth + 1);
  }
  let type = s.type;
  if (Array.isArray(type)) type = type.find((t) => t !== 'null') ?? type[0];
  if (type === undefined) type = s.properties ? 'object' : s.items || s.prefixItems ? 'array' : 'string';
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      const props = (s.properties && typeof s.properties === 'object' ? s.properties : {}) as Schema;
      for (const [k, v] of Object.entries(props)) out[k] = gen(v, rng, root, depth + 1);
      // Required keys without a property schema still have to be present.
      if (Array.isArray(s.required))
        for (const k of s.required) if (typeof k === 'string' && !(k in out)) out[k] = words(rng, 1, 2);
      return out;
    }
    case 'array': {
      const prefix = Array.isArray(s.prefixItems) ? (s.prefixItems as unknown[]) : [];
      const min = Math.max(num(s.minItems, 1), prefix.length);
      const max = Math.max(min, num(s.maxItems, Math.max(min, 3)));
      const n = rng.int(min, Math.min(max, min + 2));
      const out: unknown[] = [];
      for (let i = 0; i < n; i++) out.push(gen(i < prefix.length ? prefix[i] : s.items, rng, root, depth + 1));
      return out;
    }
    case 'integer':
    case 'number': {
      let lo =
        typeof s.minimum === 'number'
          ? s.minimum
          : typeof s.exclusiveMinimum === 'number'
            ? s.exclusiveMinimum + (type === 'integer' ? 1 : 0.5)
            : 0;
      let hi =
        typeof s.maximum === 'number'
          ? s.maximum
          : typeof s.exclusiveMaximum === 'number'
            ? s.exclusiveMaximum - (type === 'integer' ? 1 : 0.5)
            : lo + 100;
      if (hi < lo) hi = lo;
      if (type === 'integer') {
        lo = Math.ceil(lo);
        hi = Math.floor(hi);
        return hi < lo ? lo : rng.int(lo, hi);
      }
      return Math.round((lo + rng.next() * (hi - lo)) * 100) / 100;
    }
    case 'boolean':
      return rng.next() < 0.5;
    case 'null':
      return null;
    default:
      return stringFor(s, rng);
  }
}

function num(v: unknown, def: number): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : def;
}

function words(rng: Rng, lo: number, hi: number): string {
  const n = rng.int(lo, hi);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(rng.pick(WORDS));
  return out.join(' ');
}

function stringFor(s: Schema, rng: Rng): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  switch (s.format) {
    case 'date-time':
      return `2026-${pad(rng.int(1, 12))}-${pad(rng.int(1, 28))}T${pad(rng.int(0, 23))}:${pad(rng.int(0, 59))}:00Z`;
    case 'date':
      return `2026-${pad(rng.int(1, 12))}-${pad(rng.int(1, 28))}`;
    case 'time':
      return `${pad(rng.int(0, 23))}:${pad(rng.int(0, 59))}:00`;
    case 'uuid': {
      const hex = () =>
        Math.floor(rng.next() * 0x10000)
          .toString(16)
          .padStart(4, '0');
      return `${hex()}${hex()}-${hex()}-4${hex().slice(1)}-a${hex().slice(1)}-${hex()}${hex()}${hex()}`;
    }
    case 'email':
      return `${rng.pick(WORDS)}@example.com`;
    case 'uri':
    case 'url':
      return `https://example.com/${rng.pick(WORDS)}`;
  }
  let text = words(rng, 1, 3);
  const min = num(s.minLength, 0);
  const max = typeof s.maxLength === 'number' && s.maxLength >= 0 ? Math.floor(s.maxLength) : Infinity;
  while (text.length < min) text += ' ' + rng.pick(WORDS);
  if (text.length > max) text = text.slice(0, max);
  return text;
}
