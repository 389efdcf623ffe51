/**
 * Go durations and Ollama's keep_alive (the spec beside this file cites the sources).
 *
 * `parseGoDuration` is Go's `time.ParseDuration`: an optional sign, then one or more decimal
 * numbers each with a unit (ns, us, µs, μs, ms, s, m, h), e.g. "300ms", "-1.5h", "2h45m"; "0" alone
 * needs no unit; nothing else (no spaces, no bare numbers) is accepted.
 *
 * `keepAliveMs` is Ollama's `api.Duration.UnmarshalJSON` (api/types.go), which every request's
 * keep_alive goes through: a JSON number is seconds, a string is a Go duration, and anything
 * negative means "keep it loaded for good"; so does a number of seconds too large for a Go
 * Duration (a string that large is refused, as Go's ParseDuration refuses it).
 */

const NS_PER_UNIT: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3, // U+00B5 micro sign
  μs: 1e3, // U+03BC Greek mu
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};
/** Go's Duration is an int64 of nanoseconds. */
const MAX_NS = 2 ** 63;

/** Go's `time.ParseDuration`, in milliseconds (to the nanosecond); undefined where Go returns an error. */
export function parseGoDuration(input: string): number | undefined {
  let s = input;
  let neg = false;
  if (s[0] === '-' || s[0] === '+') {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let ns = 0;
  let i = 0;
  while (i < s.length) {
    // A number: digits, then optionally "." and more digits, with at least one digit in all.
    const start = i;
    while (i < s.length && s[i] >= '0' && s[i] <= '9') i++;
    const intPart = s.slice(start, i);
    let fracPart = '';
    if (s[i] === '.') {
      const f = ++i;
      while (i < s.length && s[i] >= '0' && s[i] <= '9') i++;
      fracPart = s.slice(f, i);
    }
    if (intPart === '' && fracPart === '') return undefined;
    // A unit: everything up to the next number.
    const u = i;
    while (i < s.length && s[i] !== '.' && !(s[i] >= '0' && s[i] <= '9')) i++;
    const unit = NS_PER_UNIT[s.slice(u, i)];
    if (unit === undefined) return undefined; // missing or unknown unit
    // As Go: the fraction scaled by the unit, truncated to whole nanoseconds.
    ns +=
      Number(intPart || '0') * unit + (fracPart ? Math.trunc(Number(fracPart) * (unit / 10 ** fracPart.length)) : 0);
    if (ns > MAX_NS) return undefined; // Go: "invalid duration" (overflows int64)
  }
  if (!neg && ns === MAX_NS) return undefined;
  const ms = Math.trunc(ns) / 1e6;
  return neg && ms !== 0 ? -ms : ms;
}

/**
 * A request's keep_alive as Ollama reads it, in ms; -1 for "for good" (any negative value).
 * Undefined when absent (or null) and when Ollama would refuse the request (a string that is not
 * a Go duration, such as "10" or "5 minutes"; a boolean, an object).
 */
export function keepAliveMs(v: unknown): number | undefined {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return undefined;
    if (v < 0) return -1;
    // Seconds past what Go's int64 of nanoseconds holds (about 292 years): Go's float-to-int
    // conversion is implementation-defined there (arm64 saturates to MaxInt64; amd64 yields
    // MinInt64). Read as the saturated MaxInt64, the value a negative one gets: for good.
    if (v * 1e9 >= MAX_NS) return -1;
    return Math.trunc(v * 1e9) / 1e6;
  }
  if (typeof v !== 'string') return undefined;
  const ms = parseGoDuration(v);
  return ms === undefined ? undefined : ms < 0 ? -1 : ms;
}
