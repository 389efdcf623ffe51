/** The number after the last `"key":` in a JSON text; undefined when absent or not a finite number. */
export function numberField(line: Buffer, key: Buffer): number | undefined {
  const at = line.lastIndexOf(key);
  if (at === -1) return undefined;
  let i = at + key.length;
  while (i < line.length && (line[i] === 32 || line[i] === 9)) i++;
  const start = i;
  let plain = true;
  let v = 0;
  for (; i < line.length; i++) {
    const c = line[i];
    if (c >= 48 && c <= 57) v = v * 10 + (c - 48);
    else if (c === 45 || c === 43 || c === 46 || c === 101 || c === 69)
      plain = false; // - + . e E
    else break;
  }
  if (i === start) return undefined;
  if (plain) return i - start <= 15 ? v : Number(line.toString('latin1', start, i));
  const n = Number(line.toString('latin1', start, i));
  return Number.isFinite(n) ? n : undefined;
}
