/**
 * Deterministic text and vectors: the same prompt gives the same words on every simulated server,
 * so a test can compare answers whichever backend served them.
 */

// Plain ASCII words: they need no JSON escaping, so a chunk is built by concatenation alone.
export const WORDS: readonly string[] = (
  'the a model answer token stream server balance load queue slot memory graph layer weight ' +
  'vector prompt reply quick brown fox jumps over lazy dog river mountain cloud signal system ' +
  'network packet latency through put value result simple clear small large fast slow bright ' +
  'dark light green blue red yellow orange purple silver golden ancient modern future past ' +
  'present north south east west city village forest ocean desert island bridge tower garden ' +
  'window door table chair book paper story poem song music rhythm voice echo silence thought ' +
  'idea reason logic number letter word sentence paragraph chapter volume history science art ' +
  'craft skill practice habit morning evening night day week month year season winter summer ' +
  'spring autumn rain snow wind storm calm gentle steady careful honest patient curious brave ' +
  'is are was were will can could should would may might must has have had does did makes ' +
  'takes gives finds keeps holds runs walks builds writes reads sends'
).split(' ');
const ENDINGS = ['.', ',', '', '', '', '', '', '', '', ''];

/** FNV-1a, 32 bit. */
export function hashString(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** mulberry32 step: returns [next state, value in [0,1)]. Kept as a state number to avoid closures. */
export function nextRandom(state: number): number {
  return (state + 0x6d2b79f5) >>> 0;
}
export function randomOf(state: number): number {
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** A seeded generator object: one per stream, no closures. */
export class WordGenerator {
  private state: number;
  private index: number;
  /** `startIndex` > 0: every word gets its leading space (the text continues something). */
  constructor(seed: number, startIndex = 0) {
    this.state = seed >>> 0;
    this.index = startIndex;
  }
  /** Next token text (a word with its leading space, sometimes punctuation). JSON-safe as is. */
  next(): string {
    this.state = nextRandom(this.state);
    const r = randomOf(this.state);
    const w = WORDS[Math.floor(r * WORDS.length)];
    const e = ENDINGS[Math.floor(((r * 7919) % 1) * ENDINGS.length)];
    const first = this.index++ === 0;
    return first ? w.charAt(0).toUpperCase() + w.slice(1) + e : ' ' + w + e;
  }
}

/** The whole answer a prompt gets, `n` tokens long (what a stream:false reply holds). */
export function generateText(seed: number, n: number): string {
  const g = new WordGenerator(seed);
  let s = '';
  for (let i = 0; i < n; i++) s += g.next();
  return s;
}

/** A unit vector of `dims` numbers derived from the text. */
export function embeddingFor(text: string, dims: number): number[] {
  let state = hashString(text);
  const v = new Array<number>(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    state = nextRandom(state);
    const x = randomOf(state) * 2 - 1;
    v[i] = x;
    norm += x * x;
  }
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < dims; i++) v[i] = Math.round((v[i] / norm) * 1e7) / 1e7;
  return v;
}

/** Float32 little-endian, base64: what OpenAI's `encoding_format: "base64"` expects. */
export function embeddingBase64(v: number[]): string {
  const f = new Float32Array(v);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('base64');
}

/** Fake token ids for generate's `context`. */
export function contextTokens(seed: number, n: number): number[] {
  const out = new Array<number>(n);
  let state = seed >>> 0;
  for (let i = 0; i < n; i++) {
    state = nextRandom(state);
    out[i] = Math.floor(randomOf(state) * 128000);
  }
  return out;
}

/** Ollama's rough token count: ~4 characters a token, at least 1 for a non-empty prompt. */
export function countTokens(text: string): number {
  return text.length === 0 ? 0 : Math.max(1, Math.ceil(text.length / 4));
}

/** Text cut into the pieces a stream sends: each piece keeps the whitespace before it. */
export function splitTextTokens(text: string): string[] {
  return text.match(/\s*\S+|\s+$/g) ?? [];
}

/** JSON text cut into tokenizer-like pieces (punctuation, short string and number runs). */
export function splitJsonTokens(json: string): string[] {
  const out: string[] = [];
  const re = /\s+|[{}[\],:]|"|[^{}[\],:"\s\\]{1,6}|\\./g;
  for (let m = re.exec(json); m; m = re.exec(json)) out.push(m[0]);
  return out;
}

/** The inside of a JSON string literal for `s` (no quotes); `s` itself when nothing needs escaping. */
export function jsonEscape(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c) return JSON.stringify(s).slice(1, -1);
  }
  return s;
}

export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}
export interface Logprob extends TokenLogprob {
  top_logprobs?: TokenLogprob[];
}

function utf8Bytes(s: string): number[] {
  return [...Buffer.from(s, 'utf8')];
}

/** Deterministic log probability of the token at `position` (and `top` alternatives, the token first). */
export function logprobFor(seed: number, position: number, token: string, top: number): Logprob {
  let state = hashString(String(position), seed);
  state = nextRandom(state);
  const lp = -Math.round(randomOf(state) * 2000) / 1000;
  const out: Logprob = { token, logprob: lp, bytes: utf8Bytes(token) };
  if (top > 0) {
    const list: TokenLogprob[] = [{ token, logprob: lp, bytes: utf8Bytes(token) }];
    let prev = lp;
    for (let i = 1; i < top; i++) {
      state = nextRandom(state);
      const alt =
        (i === 1 && position > 0 ? ' ' : '') +
        WORDS[Math.floor(randomOf(state) * WORDS.length)] +
        (i > 1 ? String(i) : '');
      prev = Math.round((prev - 0.5 - randomOf(state)) * 1000) / 1000;
      list.push({ token: alt, logprob: prev, bytes: utf8Bytes(alt) });
    }
    out.top_logprobs = list;
  }
  return out;
}
