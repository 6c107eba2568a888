// Statistics: the caller's alarms by type, enterprise, camera, day and hour, and the mean time to
// acknowledge and to close, from /api/alarms/stats, charted with the vendored ECharts.
import { api, h } from "./api.js";
import { loadECharts } from "./charts.js";

const TEXT = "#e6edf5";
const MUTED = "#8ea0b6";
const GRID = "#2b3a50";
const BAR = "#3d8bfd";
const PROFILE = { enterprise: "企业", gas_station: "加油站" };

function day(d) {
  const p = n => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

// "1 h 5 min", "42 s"; "–" when nothing was acknowledged or closed.
export function duration(s) {
  if (s == null) return "–";
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  const hours = Math.floor(s / 3600);
  if (hours < 48) return `${hours} h ${Math.round((s % 3600) / 60)} min`;
  return `${(s / 86400).toFixed(1)} d`;
}

// The ECharts option of one bar (or line) chart of [label, count] pairs.
export function barOption(pairs, { horizontal = false, line = false, name = "报警数 alarms" } = {}) {
  const cat = { type: "category", data: pairs.map(p => p[0]), axisLabel: { color: MUTED, hideOverlap: true },
    axisLine: { lineStyle: { color: GRID } } };
  const val = { type: "value", minInterval: 1, axisLabel: { color: MUTED }, splitLine: { lineStyle: { color: GRID } } };
  return {
    backgroundColor: "transparent",
    animation: false,
    textStyle: { color: TEXT, fontFamily: "system-ui, 'Noto Sans CJK SC', sans-serif" },
    grid: { left: horizontal ? 150 : 48, right: 24, top: 20, bottom: 40 },
    tooltip: { trigger: "axis" },
    xAxis: horizontal ? val : cat,
    yAxis: horizontal ? { ...cat, inverse: true } : val,
    series: [{
      name, type: line ? "line" : "bar", data: pairs.map(p => p[1]), itemStyle: { color: BAR },
      showSymbol: pairs.length < 40, barMaxWidth: 28, areaStyle: line ? { color: "rgba(61, 139, 253, .2)" } : undefined,
    }],
  };
}

// Each chart: [id, title, pairs from the stats, options].
export function chartsOf(stats) {
  const hours = new Map(stats.by_hour.map(x => [x.hour, x.count]));
  const camLabel = c => c.name || c.video_code;
  return [
    ["type", "按类型 By type", stats.by_type.map(t => [`${t.name || t.alarm_type} (${PROFILE[t.profile] || t.profile} ${t.alarm_type})`, t.count]), { horizontal: true }],
    ["org", "按企业 By enterprise", stats.by_org.map(o => [o.name || `#${o.org_id ?? "?"}`, o.count]), { horizontal: true }],
    ["camera", "按摄像机 By camera (前 15 top 15)", stats.by_camera.slice(0, 15).map(c => [camLabel(c), c.count]), { horizontal: true }],
    ["day", "按日 By day", stats.by_day.map(d => [d.day, d.count]), { line: true }],
    ["hour", "按时段 By hour of day", Array.from({ length: 24 }, (_, i) => [`${i}时`, hours.get(i) || 0]), {}],
  ];
}

export class StatsView {
  constructor() {
    this.charts = new Map();
    const today = new Date();
    this.start = h("input", { type: "date", class: "stats-start", value: day(new Date(today.getTime() - 29 * 86400e3)) });
    this.end = h("input", { type: "date", class: "stats-end", value: day(today) });
    this.error = h("p", { class: "error", role: "alert" });
    this.figures = h("div", { class: "stats-figures", id: "stats-figures" });
    this.grid = h("div", { class: "stats-grid" });
    this.el = h("div", { class: "stats-view" },
      h("div", { class: "toolbar" }, "从 From ", this.start, " 至 To ", this.end,
        h("button", { class: "stats-refresh", onclick: () => this.refresh() }, "刷新 Refresh")),
      this.error, this.figures, this.grid);
    this.resize = () => this.charts.forEach(c => c.resize());
  }

  async mount(root) {
    root.replaceChildren(this.el);
    window.removeEventListener("resize", this.resize);
    window.addEventListener("resize", this.resize);
    await this.refresh();
  }

  query() {
    const q = new URLSearchParams();
    // local midnights, sent as instants: the range the operator sees on the calendar
    if (this.start.value) q.set("start", new Date(this.start.value + "T00:00:00").toISOString());
    if (this.end.value) q.set("end", new Date(new Date(this.end.value + "T00:00:00").getTime() + 86400e3).toISOString());
    return q.toString();
  }

  async refresh() {
    this.error.textContent = "";
    let stats;
    try {
      [stats] = await Promise.all([api("/api/alarms/stats?" + this.query()), loadECharts()]);
    } catch (e) { this.error.textContent = e.message; return; }
    this.stats = stats;
    const fig = (label, value, cls = "") => h("div", { class: "figure " + cls }, h("div", { class: "figure-value" }, value), h("div", { class: "muted" }, label));
    this.figures.replaceChildren(
      fig("报警总数 Alarms", stats.total),
      fig("报警中 Active", stats.active, stats.active ? "bad" : ""),
      fig("误报 False alarms", stats.false_alarms),
      fig("平均确认时长 Mean time to acknowledge", duration(stats.mean_ack_s), "stats-mean-ack"),
      fig("平均关闭时长 Mean time to close", duration(stats.mean_close_s), "stats-mean-close"),
      fig("已确认 / 已关闭 Acknowledged / closed", `${stats.acknowledged} / ${stats.closed}`));
    const echarts = window.echarts;
    for (const [id, title, pairs, opts] of chartsOf(stats)) {
      let box = this.grid.querySelector(`[data-chart="${id}"]`);
      if (!box) {
        box = h("div", { class: "stats-chart", "data-chart": id });
        this.grid.append(h("section", { class: "stats-panel" }, h("h3", {}, title), box));
      }
      box.parentElement.querySelector(".stats-empty")?.remove();
      if (!pairs.length) box.parentElement.append(h("p", { class: "muted stats-empty" }, "无数据 no data"));
      let chart = this.charts.get(id);
      if (!chart || chart.isDisposed()) { chart = echarts.init(box, null, { renderer: "canvas" }); this.charts.set(id, chart); }
      chart.setOption(barOption(pairs, opts), { notMerge: true });
      chart.resize();
    }
  }

  unmount() {
    window.removeEventListener("resize", this.resize);
    this.charts.forEach(c => c.dispose());
    this.charts.clear();
  }
}
