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

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

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
      parts.push(
        `<rect x="${left + labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${b.accent ? '#2b6cb0' : '#a0aec0'}"/>`,
      );
      parts.push(
        `<text x="${(left + labelW + w + 4).toFixed(1)}" y="${y + barH - 4}">${esc(fmtValue(b.value))} ${esc(spec.unit)}</text>`,
      );
      y += barH + gap;
    }
    y += groupGap;
  }
  if (spec.reference) {
    const rx = left + labelW + x(spec.reference.value);
    parts.push(
      `<line x1="${rx.toFixed(1)}" y1="${top}" x2="${rx.toFixed(1)}" y2="${y - groupGap}" stroke="#c53030" stroke-dasharray="4 3"/>`,
    );
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

export interface LineSeries {
  label: string;
  points: [number, number][];
  colour: string;
  dashed?: boolean;
}

/** A dependency-free line chart (x linear, y linear or log10), one line per series, legend on the right. */
export function lineChart(spec: {
  title: string;
  xLabel: string;
  unit: string;
  series: LineSeries[];
  log?: boolean;
}): string {
  const left = 60;
  const top = 40;
  const plotW = 560;
  const plotH = 280;
  const legendW = 190;
  const all = spec.series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]).filter((v) => Number.isFinite(v));
  const xMax = xs.length ? Math.max(...xs) : 1;
  const yPos = ys.filter((v) => v > 0);
  const lo = spec.log ? Math.pow(10, Math.floor(Math.log10(yPos.length ? Math.min(...yPos) : 1))) : 0;
  const hi = spec.log
    ? Math.pow(10, Math.ceil(Math.log10(yPos.length ? Math.max(...yPos) : 10)))
    : (ys.length ? Math.max(...ys) : 1) * 1.1 || 1;
  const x = (v: number): number => left + (v / (xMax || 1)) * plotW;
  const y = (v: number): number => {
    const f = spec.log ? Math.log10(Math.max(v, lo) / lo) / Math.log10(hi / lo || 10) : v / hi;
    return top + plotH - Math.min(1, Math.max(0, f)) * plotH;
  };
  const parts: string[] = [];
  parts.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#cbd5e0"/>`);
  const ticks: number[] = [];
  if (spec.log) for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
  else for (let i = 0; i <= 4; i++) ticks.push((hi * i) / 4);
  for (const t of ticks) {
    parts.push(
      `<line x1="${left}" y1="${y(t).toFixed(1)}" x2="${left + plotW}" y2="${y(t).toFixed(1)}" stroke="#edf2f7"/>`,
    );
    parts.push(`<text x="${left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${esc(fmtValue(t))}</text>`);
  }
  // Round x ticks (1, 2 or 5 times a power of ten), about five of them.
  const raw = (xMax || 1) / 5;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw) ?? raw;
  for (let v = 0; v <= xMax + 1e-9; v += step)
    parts.push(`<text x="${x(v).toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle">${esc(fmtValue(v))}</text>`);
  parts.push(`<text x="${left + plotW / 2}" y="${top + plotH + 34}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  parts.push(
    `<text x="14" y="${top + plotH / 2}" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle">${esc(spec.unit)}${spec.log ? ' (log)' : ''}</text>`,
  );
  spec.series.forEach((s, i) => {
    const d = s.points
      .filter((p) => Number.isFinite(p[1]))
      .map((p, j) => `${j === 0 ? 'M' : 'L'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`)
      .join(' ');
    if (d)
      parts.push(
        `<path d="${d}" fill="none" stroke="${s.colour}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`,
      );
    const ly = top + 10 + i * 18;
    parts.push(
      `<line x1="${left + plotW + 14}" y1="${ly}" x2="${left + plotW + 40}" y2="${ly}" stroke="${s.colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`,
    );
    parts.push(`<text x="${left + plotW + 46}" y="${ly + 4}">${esc(s.label)}</text>`);
  });
  const width = left + plotW + legendW;
  const height = top + plotH + 46;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">${esc(spec.title)}</text>
${parts.join('\n')}
</svg>
`;
}
