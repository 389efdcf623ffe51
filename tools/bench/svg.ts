/** Dependency-free SVG bar charts (horizontal bars, grouped, value printed at each bar). */

export interface Bar {
  label: string;
  value: number;
  /** Drawn in the accent colour (e.g. the balancer's own policies). */
  accent?: boolean;
}

export interface BarGroup {
  label: string;
  bars: Bar[];
}

export interface ChartSpec {
  title: string;
  unit: string;
  groups: BarGroup[];
  /** Optional vertical reference line (e.g. a target), with its label. */
  reference?: { value: number; label: string };
  /** Use a log10 axis (for values spanning orders of magnitude). */
  log?: boolean;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function fmtValue(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function barChart(spec: ChartSpec): string {
  const labelW = 190;
  const plotW = 520;
  const barH = 16;
  const gap = 4;
  const groupGap = 14;
  const top = 40;
  const left = 10;
  const finite = spec.groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v) => Number.isFinite(v) && v > 0);
  if (spec.reference) finite.push(spec.reference.value);
  const max = finite.length ? Math.max(...finite) : 1;
  const min = finite.length ? Math.min(...finite) : 1;
  const lo = spec.log ? Math.pow(10, Math.floor(Math.log10(min))) : 0;
  const hi = spec.log ? Math.pow(10, Math.ceil(Math.log10(max))) : max * 1.1;
  const x = (v: number): number => {
    if (!Number.isFinite(v) || v <= 0) return 0;
    if (spec.log) return (Math.max(0, Math.log10(v / lo)) / Math.log10(hi / lo)) * plotW;
    return (v / hi) * plotW;
  };
  const parts: string[] = [];
  let y = top;
  for (const g of spec.groups) {
    parts.push(`<text x="${left}" y="${y + 12}" font-weight="bold">${esc(g.label)}</text>`);
    y += 18;
    for (const b of g.bars) {
      const w = Math.max(1, x(b.value));
      parts.push(`<text x="${left + labelW - 6}" y="${y + barH - 4}" text-anchor="end">${esc(b.label)}</text>`);
      parts.push(`<rect x="${left + labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${b.accent ? '#2b6cb0' : '#a0aec0'}"/>`);
      parts.push(`<text x="${(left + labelW + w + 4).toFixed(1)}" y="${y + barH - 4}">${esc(fmtValue(b.value))} ${esc(spec.unit)}</text>`);
      y += barH + gap;
    }
    y += groupGap;
  }
  if (spec.reference) {
    const rx = left + labelW + x(spec.reference.value);
    parts.push(`<line x1="${rx.toFixed(1)}" y1="${top}" x2="${rx.toFixed(1)}" y2="${y - groupGap}" stroke="#c53030" stroke-dasharray="4 3"/>`);
    parts.push(`<text x="${(rx + 3).toFixed(1)}" y="${top - 4}" fill="#c53030">${esc(spec.reference.label)}</text>`);
  }
  const height = y + 10;
  const width = left + labelW + plotW + 110;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${left}" y="20" font-size="15" font-weight="bold">${esc(spec.title)}${spec.log ? ' (log scale)' : ''}</text>
${parts.join('\n')}
</svg>
`;
}
