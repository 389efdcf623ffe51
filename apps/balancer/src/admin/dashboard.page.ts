import { createHash } from 'crypto';

/*
 * The dashboard: one self-contained page (HTML, CSS, plain JS; no framework, no build step, no
 * external request). It reads the live feed at <base>/events (server-sent events, falling back to
 * polling <base>/dashboard/data) and carries ?token= on to both. Elements the browser test reads
 * carry data-backend / data-gpu / data-k attributes.
 */
export const DASHBOARD_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ollama GPU balancer</title>
<link rel="icon" href="data:,">
<style>
:root {
  --bg: #0b1020; --panel: #121a2d; --panel2: #172038; --line: #243150; --text: #e7ecf6; --muted: #8b97b3;
  --ok: #34d399; --warn: #fbbf24; --bad: #f87171; --accent: #60a5fa; --violet: #a78bfa;
}
* { box-sizing: border-box; }
html, body { margin: 0; background: var(--bg); color: var(--text); }
body { font: 14px/1.45 ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; padding: 20px 24px 32px; }
.num, .mono { font-variant-numeric: tabular-nums; }
.mono { font-family: ui-monospace, "SFMono-Regular", Menlo, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
header { display: flex; align-items: center; gap: 14px; margin-bottom: 18px; flex-wrap: wrap; }
header h1 { font-size: 20px; margin: 0; font-weight: 650; letter-spacing: .2px; }
header h1 span { color: var(--muted); font-weight: 500; }
.pill { display: inline-flex; align-items: center; gap: 6px; padding: 2px 10px; border-radius: 999px; font-size: 12px; font-weight: 600; background: var(--panel2); border: 1px solid var(--line); color: var(--muted); white-space: nowrap; }
.pill.ok { color: var(--ok); border-color: rgba(52,211,153,.35); background: rgba(52,211,153,.08); }
.pill.warn { color: var(--warn); border-color: rgba(251,191,36,.35); background: rgba(251,191,36,.08); }
.pill.bad { color: var(--bad); border-color: rgba(248,113,113,.4); background: rgba(248,113,113,.08); }
.pill.info { color: var(--accent); border-color: rgba(96,165,250,.35); background: rgba(96,165,250,.08); }
.live { margin-left: auto; display: flex; align-items: center; gap: 8px; color: var(--muted); font-size: 12.5px; }
.dot { width: 9px; height: 9px; border-radius: 50%; background: var(--muted); }
.dot.on { background: var(--ok); box-shadow: 0 0 0 0 rgba(52,211,153,.6); animation: pulse 2s infinite; }
.dot.off { background: var(--bad); }
@keyframes pulse { 0% { box-shadow: 0 0 0 0 rgba(52,211,153,.55); } 70% { box-shadow: 0 0 0 8px rgba(52,211,153,0); } 100% { box-shadow: 0 0 0 0 rgba(52,211,153,0); } }
.kpis { display: grid; grid-template-columns: repeat(7, minmax(120px, 1fr)); gap: 12px; margin-bottom: 14px; }
.kpi { background: var(--panel); border: 1px solid var(--line); border-radius: 12px; padding: 12px 14px; }
.kpi .label { color: var(--muted); font-size: 11.5px; text-transform: uppercase; letter-spacing: .6px; }
.kpi .value { font-size: 24px; font-weight: 650; margin-top: 2px; }
.kpi .value small { font-size: 13px; color: var(--muted); font-weight: 500; margin-left: 3px; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 12px; padding: 14px 16px; }
.panel h2 { font-size: 13px; margin: 0 0 10px; color: var(--muted); text-transform: uppercase; letter-spacing: .7px; font-weight: 600; display: flex; align-items: center; gap: 10px; }
.panel h2 .legend { margin-left: auto; text-transform: none; letter-spacing: 0; font-weight: 500; display: flex; gap: 12px; flex-wrap: wrap; }
.legend i { display: inline-block; width: 10px; height: 3px; border-radius: 2px; margin-right: 5px; vertical-align: middle; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-bottom: 14px; }
svg.chart { width: 100%; height: 150px; display: block; }
svg.chart text { fill: var(--muted); font-size: 10.5px; }
.backends { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 12px; margin-bottom: 14px; }
.backend { background: var(--panel); border: 1px solid var(--line); border-radius: 12px; padding: 14px 16px; border-top: 3px solid var(--c, var(--accent)); }
.backend.down { opacity: .75; border-top-color: var(--bad); }
.bhead { display: flex; align-items: center; gap: 8px; }
.bhead .name { font-weight: 650; font-size: 16px; }
.bhead .url { color: var(--muted); font-size: 12px; margin-left: auto; }
.bstats { display: grid; grid-template-columns: repeat(4, 1fr); gap: 8px; margin: 12px 0 10px; }
.bstat .label { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .5px; }
.bstat .v { font-size: 19px; font-weight: 650; }
.bstat .v small { font-size: 12px; color: var(--muted); font-weight: 500; margin-left: 2px; }
.chips { display: flex; gap: 6px; flex-wrap: wrap; min-height: 24px; margin-bottom: 10px; }
.chip { font-size: 12px; padding: 2px 8px; border-radius: 6px; background: var(--panel2); border: 1px solid var(--line); }
.chip b { color: var(--ok); font-weight: 650; margin-left: 4px; }
.chip.none { color: var(--muted); border-style: dashed; }
.gpu { background: var(--panel2); border: 1px solid var(--line); border-radius: 10px; padding: 10px 12px; margin-top: 8px; }
.gpuhead { display: flex; justify-content: space-between; align-items: baseline; gap: 8px; margin-bottom: 8px; }
.gpuhead .gname { font-weight: 600; font-size: 13px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.gpuhead .gname span { color: var(--muted); font-weight: 500; margin-right: 6px; }
.metric { display: grid; grid-template-columns: 58px 1fr 112px; align-items: center; gap: 10px; margin: 5px 0; font-size: 12.5px; }
.metric .label { color: var(--muted); }
.metric .val { text-align: right; }
.bar { height: 8px; border-radius: 5px; background: #0d1426; border: 1px solid var(--line); overflow: hidden; }
.bar > div { height: 100%; border-radius: 5px; transition: width .6s ease; }
.temp { font-weight: 650; font-size: 13px; }
.agent-note { color: var(--muted); font-size: 12.5px; padding: 8px 0 2px; }
.lower { display: grid; grid-template-columns: 1.5fr 1fr; gap: 12px; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 11.5px; text-transform: uppercase; letter-spacing: .5px; padding: 4px 8px 6px; border-bottom: 1px solid var(--line); }
td { padding: 5px 8px; border-bottom: 1px solid rgba(36,49,80,.55); font-size: 13px; }
tr:last-child td { border-bottom: 0; }
td.r, th.r { text-align: right; }
.reason { font-size: 11.5px; font-weight: 650; padding: 1px 8px; border-radius: 999px; border: 1px solid; }
.matrix td.cell { text-align: center; }
.mk { display: inline-block; width: 12px; height: 12px; border-radius: 50%; vertical-align: middle; }
.mk.loaded { background: var(--ok); box-shadow: 0 0 6px rgba(52,211,153,.5); }
.mk.disk { border: 2px solid var(--muted); }
.mk.busy { background: var(--warn); box-shadow: 0 0 6px rgba(251,191,36,.55); }
.muted { color: var(--muted); }
.empty { color: var(--muted); padding: 10px 0; font-size: 13px; }
.swatch { display: inline-block; width: 8px; height: 8px; border-radius: 2px; margin-right: 6px; }
@media (max-width: 1100px) { .kpis { grid-template-columns: repeat(4, 1fr); } .charts, .lower { grid-template-columns: 1fr; } }
</style>
</head>
<body data-updates="0">
<header>
  <h1>Ollama GPU balancer <span id="policy"></span></h1>
  <span class="pill" id="summary">connecting…</span>
  <div class="live"><span class="dot" id="dot"></span><span id="liveText">connecting</span></div>
</header>

<section class="kpis">
  <div class="kpi"><div class="label">Backends up</div><div class="value num" id="kBackends">–</div></div>
  <div class="kpi"><div class="label">In flight</div><div class="value num" id="kInflight">–</div></div>
  <div class="kpi"><div class="label">Queue</div><div class="value num" id="kQueue">–</div></div>
  <div class="kpi"><div class="label">Requests / s</div><div class="value num" id="kRps">–</div></div>
  <div class="kpi"><div class="label">p95 latency</div><div class="value num" id="kP95">–</div></div>
  <div class="kpi"><div class="label">Tokens / s</div><div class="value num" id="kTps">–</div></div>
  <div class="kpi"><div class="label">GPU util (mean)</div><div class="value num" id="kGpu">–</div></div>
</section>

<section class="charts">
  <div class="panel"><h2>Request rate <span class="legend" id="rateLegend"></span></h2><svg class="chart" id="rateChart"></svg></div>
  <div class="panel"><h2>Latency <span class="legend"><span><i style="background:#60a5fa"></i>p50</span><span><i style="background:#f472b6"></i>p95</span><span><i style="background:#fbbf24"></i>mean TTFB</span></span></h2><svg class="chart" id="latChart"></svg></div>
</section>

<section class="backends" id="backends"></section>

<section class="lower">
  <div class="panel"><h2>Latest routing decisions</h2><div id="decisions"></div></div>
  <div style="display:grid; gap:12px; align-content:start">
    <div class="panel"><h2>Waiting by class and key</h2><div id="waiting"></div></div>
    <div class="panel"><h2>Models loaded where</h2><div id="matrix"></div></div>
    <div class="panel"><h2>Backend events</h2><div id="events"></div></div>
  </div>
</section>

<script>
(function () {
  'use strict';
  var COLORS = ['#60a5fa', '#a78bfa', '#34d399', '#f472b6', '#fbbf24', '#22d3ee', '#fb923c', '#a3e635'];
  var REASON_COLORS = { warm: '#34d399', 'cold-load': '#60a5fa', affinity: '#a78bfa', 'only-candidate': '#94a3b8', 'least-loaded': '#22d3ee', 'round-robin': '#fbbf24', 'least-connections': '#fb923c', 'seed-score': '#f472b6', any: '#94a3b8' };
  var params = new URLSearchParams(location.search);
  var token = params.get('token');
  var q = token ? '?token=' + encodeURIComponent(token) : '';
  var base = location.pathname.replace(/\/dashboard\/?$/, '');
  var updates = 0, lastAt = 0, last = null, colorOf = {};

  function $(id) { return document.getElementById(id); }
  function esc(s) { return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]; }); }
  function gib(b) { return b == null ? '–' : (b / 1073741824).toFixed(b >= 10 * 1073741824 ? 0 : 1); }
  function ms(v) { if (v == null) return '–'; return v >= 10000 ? (v / 1000).toFixed(0) + '<small>s</small>' : v >= 1000 ? (v / 1000).toFixed(1) + '<small>s</small>' : Math.round(v) + '<small>ms</small>'; }
  function pct(v) { return Math.max(0, Math.min(100, v || 0)); }
  function heat(v) { return v >= 85 ? 'var(--bad)' : v >= 60 ? 'var(--warn)' : 'var(--ok)'; }
  function tempColor(t) { return t >= 83 ? 'var(--bad)' : t >= 70 ? 'var(--warn)' : 'var(--ok)'; }
  function ago(iso) { var s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000); return s < 60 ? Math.round(s) + 's ago' : Math.round(s / 60) + 'm ago'; }
  function bar(p, color) { return '<div class="bar"><div style="width:' + pct(p).toFixed(1) + '%;background:' + color + '"></div></div>'; }

  function healthPill(b) {
    if (b.retiring) return '<span class="pill warn" data-k="health" title="' + esc(b.retiring) + '">draining</span>';
    if (b.cordoned) return '<span class="pill warn" data-k="health">cordoned</span>';
    if (b.ejected) return '<span class="pill bad" data-k="health">ejected</span>';
    if (b.health === 'healthy') return '<span class="pill ok" data-k="health">healthy</span>';
    if (b.health === 'unhealthy') return '<span class="pill bad" data-k="health">down</span>';
    return '<span class="pill" data-k="health">checking</span>';
  }

  function gpuHtml(g) {
    var memP = g.memoryTotalBytes ? (100 * g.memoryUsedBytes) / g.memoryTotalBytes : 0;
    var powP = g.powerLimitW ? (100 * (g.powerUsageW || 0)) / g.powerLimitW : 0;
    var util = g.utilizationGpu == null ? null : Math.round(g.utilizationGpu);
    return '<div class="gpu" data-gpu="' + g.index + '">' +
      '<div class="gpuhead"><div class="gname"><span>GPU ' + g.index + '</span>' + esc(g.name) + '</div>' +
      '<div class="temp num" data-k="temp" style="color:' + tempColor(g.temperatureC || 0) + '">' + (g.temperatureC == null ? '–' : Math.round(g.temperatureC) + ' °C') + '</div></div>' +
      '<div class="metric"><span class="label">Util</span>' + bar(util || 0, heat(util || 0)) + '<span class="val num" data-k="util">' + (util == null ? '–' : util + '%') + '</span></div>' +
      '<div class="metric"><span class="label">Memory</span>' + bar(memP, 'linear-gradient(90deg,#6366f1,#a78bfa)') + '<span class="val num" data-k="mem">' + gib(g.memoryUsedBytes) + ' / ' + gib(g.memoryTotalBytes) + ' GiB</span></div>' +
      '<div class="metric"><span class="label">Power</span>' + bar(powP, 'linear-gradient(90deg,#0ea5e9,#22d3ee)') + '<span class="val num" data-k="power">' + (g.powerUsageW == null ? '–' : Math.round(g.powerUsageW) + ' W') + (g.powerLimitW ? ' / ' + Math.round(g.powerLimitW) + ' W' : '') + '</span></div>' +
      '</div>';
  }

  function backendHtml(b, i, rps) {
    var c = colorOf[b.name];
    var loaded = b.loaded.length ? b.loaded.map(function (m) {
      return '<span class="chip" title="' + esc(gib(m.sizeVram)) + ' GiB in VRAM">' + esc(m.name) + (m.inFlight ? '<b>' + m.inFlight + '</b>' : '') + '</span>';
    }).join('') : '<span class="chip none">no model loaded</span>';
    var gpus;
    if (!b.agent) gpus = '<div class="agent-note">No gpu-agent configured for this backend.</div>';
    else if (!b.agent.gpus.length) gpus = '<div class="agent-note">' + (b.agent.error ? 'Agent unreachable: ' + esc(b.agent.error) : b.agent.nvml && !b.agent.nvml.available ? 'NVML unavailable on this host' : 'Waiting for the agent…') + '</div>';
    else gpus = b.agent.gpus.map(gpuHtml).join('') + (b.agent.fresh ? '' : '<div class="agent-note">⚠ GPU reading is stale (' + Math.round((b.agent.ageMs || 0) / 1000) + 's old)</div>');
    var cap = b.parallel * Math.max(1, b.loaded.length);
    return '<article class="backend' + (b.available ? '' : ' down') + '" style="--c:' + c + '" data-backend="' + esc(b.name) + '">' +
      '<div class="bhead"><span class="name">' + esc(b.name) + '</span>' + healthPill(b) + '<span class="url mono">' + esc(b.url) + '</span></div>' +
      '<div class="bstats">' +
      '<div class="bstat"><div class="label">In flight</div><div class="v num"><span data-k="inflight">' + b.inFlight + '</span><small>/ ' + cap + '</small></div></div>' +
      '<div class="bstat"><div class="label">Req/s</div><div class="v num" data-k="rps">' + rps.toFixed(rps >= 10 ? 0 : 1) + '</div></div>' +
      '<div class="bstat"><div class="label">TTFB</div><div class="v num">' + ms(b.learned.ttfbMs) + '</div></div>' +
      '<div class="bstat"><div class="label">Served</div><div class="v num" data-k="served">' + b.served + '</div></div>' +
      '</div>' +
      '<div class="chips">' + loaded + '</div>' + gpus +
      (b.lastError && b.health === 'unhealthy' ? '<div class="agent-note" style="color:var(--bad)">' + esc(b.lastError) + '</div>' : '') +
      '</article>';
  }

  function path(points, w, h, max, x0) {
    var n = points.length, d = '';
    for (var i = 0; i < n; i++) {
      if (points[i] == null) continue;
      var x = x0 + (i / Math.max(1, n - 1)) * (w - x0), y = h - 16 - (points[i] / max) * (h - 30);
      d += (d === '' || points[i - 1] == null ? 'M' : 'L') + x.toFixed(1) + ' ' + y.toFixed(1);
    }
    return d;
  }
  function niceMax(v) { if (v <= 0) return 1; var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p; return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p; }
  var X0 = 46;
  function fmtAxis(v, unit) {
    if (unit === 'ms') return v >= 1000 ? +(v / 1000).toFixed(1) + ' s' : Math.round(v) + ' ms';
    return +v.toFixed(2) + unit;
  }
  function axes(max, unit, w, h, spanS) {
    var s = '';
    for (var k = 0; k <= 2; k++) {
      var y = h - 16 - (k / 2) * (h - 30);
      s += '<line x1="' + X0 + '" x2="' + w + '" y1="' + y + '" y2="' + y + '" stroke="#243150" stroke-width="1"/>';
      s += '<text x="' + (X0 - 6) + '" y="' + (y + 3.5) + '" text-anchor="end">' + (k ? fmtAxis(max * k / 2, unit) : '0') + '</text>';
    }
    s += '<text x="' + X0 + '" y="' + (h - 2) + '">−' + (spanS < 120 ? Math.round(spanS) + ' s' : Math.round(spanS / 60) + ' min') + '</text><text x="' + w + '" y="' + (h - 2) + '" text-anchor="end">now</text>';
    return s;
  }
  function sizeOf(svg) { var w = Math.max(200, Math.round(svg.clientWidth || 600)); svg.setAttribute('viewBox', '0 0 ' + w + ' 150'); return w; }
  function dots(points, w, h, max, color) {
    var n = points.length, s = '';
    for (var i = 0; i < n; i++) {
      if (points[i] == null) continue;
      var x = X0 + (i / Math.max(1, n - 1)) * (w - X0), y = h - 16 - (points[i] / max) * (h - 30);
      s += '<circle cx="' + x.toFixed(1) + '" cy="' + y.toFixed(1) + '" r="2.4" fill="' + color + '"/>';
    }
    return s;
  }

  function rateChart(t) {
    var svgEl = $('rateChart'), w = sizeOf(svgEl), h = 150, series = t.series, slotS = t.slotMs / 1000, n = series.length, x0 = X0;
    var totals = series.map(function (p) { return p.rps; });
    var max = niceMax(Math.max.apply(null, totals.concat([0.5])) * 1.1);
    var svg = axes(max, '/s', w, h, n * slotS);
    // Stacked areas, one per backend.
    var acc = series.map(function () { return 0; });
    t.backends.forEach(function (name, k) {
      var lower = acc.slice();
      var upper = series.map(function (p, i) { return (acc[i] += p.perBackend[k] / (i === n - 1 ? Math.max(1, (Date.now() - p.t) / 1000) : slotS)); });
      var top = path(upper, w, h, max, x0), bottom = '';
      for (var i = n - 1; i >= 0; i--) { var x = x0 + (i / Math.max(1, n - 1)) * (w - x0), y = h - 16 - (lower[i] / max) * (h - 30); bottom += 'L' + x.toFixed(1) + ' ' + y.toFixed(1); }
      svg += '<path d="' + top + bottom + 'Z" fill="' + colorOf[name] + '" fill-opacity=".28" stroke="none"/>';
      svg += '<path d="' + top + '" fill="none" stroke="' + colorOf[name] + '" stroke-width="1.6"/>';
    });
    svgEl.innerHTML = svg;
    $('rateLegend').innerHTML = t.backends.map(function (b) { return '<span><i style="background:' + colorOf[b] + '"></i>' + esc(b) + '</span>'; }).join('');
  }

  function latChart(t) {
    var svgEl = $('latChart'), w = sizeOf(svgEl), h = 150, s = t.series, n = s.length;
    var p50 = s.map(function (p) { return p.p50Ms; }), p95 = s.map(function (p) { return p.p95Ms; }), tt = s.map(function (p) { return p.meanTtfbMs; });
    var max = niceMax(Math.max.apply(null, p95.concat(tt, [50]).filter(function (v) { return v != null; })) * 1.05);
    var svg = axes(max, 'ms', w, h, n * t.slotMs / 1000);
    svg += '<path d="' + path(p95, w, h, max, X0) + '" fill="none" stroke="#f472b6" stroke-width="1.8"/>' + dots(p95, w, h, max, '#f472b6');
    svg += '<path d="' + path(p50, w, h, max, X0) + '" fill="none" stroke="#60a5fa" stroke-width="1.8"/>' + dots(p50, w, h, max, '#60a5fa');
    svg += '<path d="' + path(tt, w, h, max, X0) + '" fill="none" stroke="#fbbf24" stroke-width="1.5" stroke-dasharray="4 3"/>' + dots(tt, w, h, max, '#fbbf24');
    svgEl.innerHTML = svg;
  }

  function decisionsHtml(ds) {
    if (!ds.length) return '<div class="empty">No requests routed yet.</div>';
    return '<table><thead><tr><th>When</th><th>Model</th><th>Backend</th><th>Reason</th><th class="r">Predicted</th><th class="r">Queued</th><th class="r">Candidates</th></tr></thead><tbody>' +
      ds.slice(0, 12).map(function (d) {
        var rc = REASON_COLORS[d.reason] || '#94a3b8';
        return '<tr data-decision><td class="muted num">' + ago(new Date(d.at).toISOString()) + '</td><td class="mono">' + esc(d.model || '–') + '</td>' +
          '<td><span class="swatch" style="background:' + (colorOf[d.backend] || '#94a3b8') + '"></span>' + esc(d.backend) + '</td>' +
          '<td><span class="reason" style="color:' + rc + ';border-color:' + rc + '66;background:' + rc + '14">' + esc(d.reason) + '</span></td>' +
          '<td class="r num">' + (d.predictedMs == null ? '–' : ms(d.predictedMs)) + '</td><td class="r num">' + (d.queuedMs ? ms(d.queuedMs) : '–') + '</td><td class="r num">' + d.candidates + '</td></tr>';
      }).join('') + '</tbody></table>';
  }

  function matrixHtml(backends) {
    var models = {};
    backends.forEach(function (b) { b.models.forEach(function (m) { models[m] = 1; }); b.loaded.forEach(function (m) { models[m.name] = 1; }); });
    var names = Object.keys(models).sort();
    if (!names.length) return '<div class="empty">No model inventory yet.</div>';
    return '<table class="matrix"><thead><tr><th>Model</th>' + backends.map(function (b) { return '<th class="r" style="text-align:center"><span class="swatch" style="background:' + colorOf[b.name] + '"></span>' + esc(b.name) + '</th>'; }).join('') + '</tr></thead><tbody>' +
      names.map(function (m) {
        return '<tr><td class="mono">' + esc(m) + '</td>' + backends.map(function (b) {
          var l = b.loaded.filter(function (x) { return x.name === m; })[0];
          if (l) return '<td class="cell" title="loaded' + (l.inFlight ? ', ' + l.inFlight + ' in flight' : '') + '"><span class="mk ' + (l.inFlight ? 'busy' : 'loaded') + '"></span>' + (l.inFlight ? ' <span class="num">' + l.inFlight + '</span>' : '') + '</td>';
          return b.models.indexOf(m) >= 0 ? '<td class="cell" title="on disk"><span class="mk disk"></span></td>' : '<td class="cell muted">–</td>';
        }).join('') + '</tr>';
      }).join('') + '</tbody></table><div class="muted" style="font-size:12px;margin-top:8px"><span class="mk loaded"></span> loaded &nbsp; <span class="mk busy"></span> serving &nbsp; <span class="mk disk"></span> on disk</div>';
  }

  function waitingHtml(s) {
    var w = s.queue.waiting || [];
    var classes = (s.priority && s.priority.classes) || [];
    if (!w.length) return '<div class="empty">Nothing waiting' + (classes.length > 1 && s.keys && s.keys.length ? ' (classes: ' + esc(classes.join(' > ')) + ')' : '') + '.</div>';
    return '<table><thead><tr><th>Class</th><th>Key</th><th class="r">Waiting</th></tr></thead><tbody>' +
      w.map(function (x) {
        return '<tr data-waiting><td>' + esc(x.class) + '</td><td class="mono">' + esc(x.key || '–') + '</td><td class="r num">' + x.waiting + '</td></tr>';
      }).join('') + '</tbody></table>';
  }

  function eventsHtml(evs) {
    if (!evs.length) return '<div class="empty">No ejections or cordons.</div>';
    return '<table><tbody>' + evs.slice(0, 8).map(function (e) {
      var cls = e.event === 'ejected' || e.event === 'unhealthy' ? 'bad' : e.event === 'cordoned' || e.event === 'retiring' ? 'warn' : e.event === 'healthy' || e.event === 'uncordoned' || e.event === 'joined' ? 'ok' : 'info';
      return '<tr><td class="muted num">' + ago(new Date(e.at).toISOString()) + '</td><td>' + esc(e.backend) + '</td><td><span class="pill ' + cls + '">' + esc(e.event) + '</span></td><td class="muted">' + esc(e.detail) + '</td></tr>';
    }).join('') + '</tbody></table>';
  }

  function render(s) {
    last = s;
    s.backends.forEach(function (b, i) { if (!colorOf[b.name]) colorOf[b.name] = COLORS[i % COLORS.length]; });
    var t = s.traffic, recent = t.series.slice(-6), rpsBy = t.backends.map(function (_, k) {
      var n = 0, span = 0;
      recent.forEach(function (p, i) { n += p.perBackend[k]; span += i === recent.length - 1 ? Math.max(1, (Date.now() - p.t) / 1000) : t.slotMs / 1000; });
      return span ? n / span : 0;
    });
    var up = s.backends.filter(function (b) { return b.available; }).length;
    var inflight = s.backends.reduce(function (a, b) { return a + b.inFlight; }, 0);
    var utils = [];
    s.backends.forEach(function (b) { if (b.agent && b.agent.fresh) b.agent.gpus.forEach(function (g) { if (g.utilizationGpu != null) utils.push(g.utilizationGpu); }); });
    $('policy').textContent = '· ' + s.policy + ' policy';
    $('kBackends').innerHTML = up + '<small>/ ' + s.backends.length + '</small>';
    $('kBackends').style.color = up === s.backends.length ? 'var(--ok)' : up === 0 ? 'var(--bad)' : 'var(--warn)';
    $('kInflight').textContent = inflight;
    $('kQueue').innerHTML = s.queue.length + '<small>/ ' + s.queue.max + '</small>';
    $('kQueue').style.color = s.queue.length > 0 ? 'var(--warn)' : '';
    $('kRps').textContent = t.last30s.rps.toFixed(t.last30s.rps >= 10 ? 0 : 1);
    $('kP95').innerHTML = ms(t.last30s.p95Ms);
    $('kTps').textContent = t.last30s.tokensPerS.toFixed(0);
    $('kGpu').innerHTML = utils.length ? Math.round(utils.reduce(function (a, b) { return a + b; }, 0) / utils.length) + '<small>%</small>' : '–';
    var sum = $('summary');
    sum.className = 'pill ' + (up === s.backends.length && up > 0 ? 'ok' : up === 0 ? 'bad' : 'warn');
    sum.textContent = up === s.backends.length && up > 0 ? 'all backends serving' : up + ' of ' + s.backends.length + ' backends serving';
    $('backends').innerHTML = s.backends.length ? s.backends.map(function (b, i) { return backendHtml(b, i, rpsBy[t.backends.indexOf(b.name)] || 0); }).join('') : '<div class="panel empty">No backends configured (OLLAMA_BACKENDS or BALANCER_CONFIG).</div>';
    rateChart(t);
    latChart(t);
    $('decisions').innerHTML = decisionsHtml(s.decisions);
    $('waiting').innerHTML = waitingHtml(s);
    $('matrix').innerHTML = matrixHtml(s.backends);
    $('events').innerHTML = eventsHtml(s.events);
    updates++;
    lastAt = Date.now();
    document.body.setAttribute('data-updates', String(updates));
  }

  function setLive(ok, text) { $('dot').className = 'dot ' + (ok ? 'on' : 'off'); $('liveText').textContent = text; }
  setInterval(function () {
    if (!lastAt) return;
    var age = (Date.now() - lastAt) / 1000;
    setLive(age < 5, age < 5 ? 'live · updated ' + (age < 1.5 ? 'just now' : Math.round(age) + 's ago') : 'no update for ' + Math.round(age) + 's');
  }, 1000);

  function poll() {
    fetch(base + '/dashboard/data' + q, { cache: 'no-store' }).then(function (r) {
      if (r.status === 401) throw new Error('admin token required: open this page with ?token=…');
      return r.json();
    }).then(function (s) { render(s); setLive(true, 'live (polling)'); }, function (e) { setLive(false, String(e.message || e)); })
      .then(function () { setTimeout(poll, 2000); });
  }

  if (window.EventSource) {
    var failures = 0;
    var es = new EventSource(base + '/events' + q);
    es.onmessage = function (e) { failures = 0; render(JSON.parse(e.data)); };
    es.onopen = function () { setLive(true, 'live'); };
    es.onerror = function () {
      setLive(false, 'reconnecting…');
      if (++failures >= 3 || es.readyState === 2) { es.close(); poll(); }
    };
  } else poll();
})();
</script>
</body>
</html>
`;

export const DASHBOARD_ETAG = `"${createHash('sha256').update(DASHBOARD_HTML).digest('base64url').slice(0, 22)}"`;
