// Trend charts of sensor readings with the vendored ECharts (loaded on first use, no CDN).
import { fmtTime } from "./api.js";

let loading = null;
export function loadECharts() {
  if (window.echarts) return Promise.resolve(window.echarts);
  loading ||= new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = "/static/vendor/echarts.min.js";
    s.onload = () => resolve(window.echarts);
    s.onerror = () => { loading = null; reject(new Error("echarts failed to load")); };
    document.head.append(s);
  });
  return loading;
}

// Threshold lines: the second alarm level (HH/LL) red, the first (H/L) orange.
const THRESHOLD_STYLE = { hh: ["HH", "#f0524f"], h: ["H", "#f5a524"], l: ["L", "#f5a524"], ll: ["LL", "#f0524f"] };
const DISCRETE = ["grounding", "overflow", "sis"];
const TEXT = "#e6edf5";
const MUTED = "#8ea0b6";
const GRID = "#2b3a50";

// One reading row of the readings API as [time ms, value, min, max]: raw rows carry a value,
// aggregate buckets min/max/avg (and last); either may name its time "at" or "bucket".
export function toPoint(row) {
  const t = new Date(row.at ?? row.bucket ?? row.t).getTime();
  const value = row.value ?? row.avg ?? row.last ?? null;
  return [t, value, row.min ?? null, row.max ?? null];
}

// A 1-2-5 step giving about five intervals over span.
function niceStep(span) {
  const raw = span / 5, mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

function round(x) { return Number(x.toPrecision(12)); }

export function thresholdLines(thresholds) {
  return Object.entries(THRESHOLD_STYLE)
    .filter(([key]) => thresholds && thresholds[key] != null)
    .map(([key, [label, color]]) => ({
      name: label, yAxis: Number(thresholds[key]),
      label: { formatter: `${label} ${thresholds[key]}`, color, position: "insideEndTop" },
      lineStyle: { color, type: key.length === 2 ? "solid" : "dashed", width: 1.5 },
    }));
}

// The chart's option: the value line, the min/max band of aggregates (a transparent lower
// series with the band stacked on it) and the H/HH/L/LL lines, the axis widened to show them.
export function trendOption(point, rows, range) {
  const pts = rows.map(toPoint).filter(p => Number.isFinite(p[0]) && p[1] != null).sort((a, b) => a[0] - b[0]);
  const banded = pts.some(p => p[2] != null && p[3] != null);
  const th = point.thresholds || {};
  const limits = ["hh", "h", "l", "ll"].map(k => th[k]).filter(v => v != null).map(Number);
  const unit = point.unit || "";
  const series = [];
  if (banded) {
    series.push({ name: "min", type: "line", stack: "band", symbol: "none", silent: true,
      lineStyle: { opacity: 0 }, data: pts.map(p => [p[0], p[2]]), tooltip: { show: false } });
    series.push({ name: "最小-最大 min–max", type: "line", stack: "band", symbol: "none", silent: true,
      lineStyle: { opacity: 0 }, areaStyle: { color: "rgba(61, 139, 253, .25)" },
      data: pts.map(p => [p[0], p[3] - p[2]]) });
  }
  series.push({
    name: banded ? "平均 mean" : "值 value", type: "line", showSymbol: pts.length < 60, symbolSize: 4,
    step: DISCRETE.includes(point.kind) ? "end" : false, // a 0/1 state holds until it changes
    sampling: "lttb", data: pts.map(p => [p[0], p[1]]), lineStyle: { color: "#3d8bfd", width: 1.6 },
    itemStyle: { color: "#3d8bfd" },
    markLine: { symbol: "none", silent: true, data: thresholdLines(th) },
  });
  // The axis covers the data and every threshold line, on round numbers, within the range.
  const bounds = v => {
    const lo = Math.min(v.min, ...limits), hi = Math.max(v.max, ...limits);
    const step = niceStep((hi - lo) || Math.abs(hi) || 1);
    let min = Math.floor((lo - step / 2) / step) * step, max = Math.ceil((hi + step / 2) / step) * step;
    if (point.range_min != null) min = Math.max(min, Number(point.range_min));
    if (point.range_max != null) max = Math.min(max, Number(point.range_max));
    return [round(min), round(max)];
  };
  return {
    backgroundColor: "transparent",
    animation: false,
    textStyle: { color: TEXT, fontFamily: "system-ui, 'Noto Sans CJK SC', sans-serif" },
    grid: { left: 56, right: 64, top: 28, bottom: 36 },
    tooltip: {
      trigger: "axis",
      valueFormatter: v => (v == null ? "–" : `${Number(v).toFixed(3).replace(/\.?0+$/, "")} ${unit}`),
    },
    xAxis: {
      type: "time", min: range ? range.start.getTime() : undefined, max: range ? range.end.getTime() : undefined,
      axisLabel: { color: MUTED, hideOverlap: true }, axisLine: { lineStyle: { color: GRID } },
      splitLine: { show: false },
    },
    yAxis: {
      type: "value", name: unit, nameTextStyle: { color: MUTED }, scale: true,
      axisLabel: { color: MUTED }, splitLine: { lineStyle: { color: GRID } },
      min: v => bounds(v)[0],
      max: v => bounds(v)[1],
    },
    series,
  };
}

// A chart bound to one element; update() replaces the data, append() adds a live value.
export class TrendChart {
  constructor(el) {
    this.el = el;
    this.chart = null;
    this.point = null;
    this.rows = [];
    this.range = null;
    this.resize = () => this.chart && this.chart.resize();
    window.addEventListener("resize", this.resize);
  }

  async show(point, rows, range) {
    const echarts = await loadECharts();
    this.point = point;
    this.rows = rows.slice();
    this.range = range;
    if (!this.chart || this.chart.isDisposed()) this.chart = echarts.init(this.el, null, { renderer: "canvas" });
    this.chart.setOption(trendOption(point, this.rows, range), { notMerge: true });
  }

  // A fresh value of the shown point (raw ranges only: a bucketed chart waits for its next load).
  append(value, at) {
    if (!this.chart || !this.point || this.rows.some(r => r.min != null)) return;
    this.rows.push({ at, value });
    const end = new Date(Math.max(Date.now(), new Date(at).getTime()));
    const span = this.range ? this.range.end - this.range.start : 3600e3;
    this.range = { start: new Date(end.getTime() - span), end };
    this.rows = this.rows.filter(r => new Date(r.at).getTime() >= this.range.start.getTime());
    this.chart.setOption(trendOption(this.point, this.rows, this.range), { notMerge: true });
  }

  dispose() {
    window.removeEventListener("resize", this.resize);
    if (this.chart) this.chart.dispose();
    this.chart = null;
  }
}

export function describeRange(range) {
  return `${fmtTime(range.start.toISOString())} — ${fmtTime(range.end.toISOString())}`;
}
