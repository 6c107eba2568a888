// Sensors: an enterprise's points by installation with live values (pushed "sensor.values",
// polled as a fallback), level colours and state badges; a point's trend chart on click.
import { api, fmtTime, h, withToken } from "./api.js";
import { cameraLabel, loadCatalog } from "./catalog.js";
import { TrendChart, describeRange } from "./charts.js";
import { CAUSES, INSTALLATION_KINDS, KINDS, fmtPoint, fmtValue, levelChip, siteOrgs } from "./levels.js";

const RANGES = [[1, "1 小时 1 h"], [6, "6 小时 6 h"], [24, "24 小时 24 h"], [168, "7 天 7 d"]];
const POLL_PUSHED_MS = 30000; // reconcile now and then even while values are pushed
const POLL_FALLBACK_MS = 5000; // the push channel is down: poll instead
const STORE_KEY = "vms.sensors.org";
const STEP_LABEL = { 0: "原始 raw", 60: "1 分钟聚合 1-min buckets", 3600: "1 小时聚合 1-h buckets" };

const EVENT_LABEL = {
  online: "上线 online", offline: "离线 offline", fault: "故障 fault", recovered: "恢复 recovered", slow: "迟报 slow",
};

function pushOpen() {
  const dot = document.getElementById("push-status");
  return !!dot && dot.dataset.state === "open";
}

export class SensorsView {
  constructor(actions) {
    this.actions = actions;
    this.orgs = [];
    this.orgId = Number(sessionStorage.getItem(STORE_KEY)) || null;
    this.points = new Map(); // id → point (configuration + live state)
    this.cards = new Map(); // id → card element
    this.selected = null;
    this.rangeH = 1;
    this.timer = null;
    this.lastPoll = 0;
    this.orgSel = h("select", { id: "sensor-org", "aria-label": "企业 enterprise", onchange: () => this.selectOrg(Number(this.orgSel.value)) });
    this.summary = h("p", { class: "summary", id: "sensor-summary" });
    this.error = h("p", { class: "error", role: "alert" });
    this.groups = h("div", { id: "sensor-groups" });
    this.detail = h("div", { id: "sensor-detail", class: "sensor-detail", hidden: true });
    this.el = h("div", { class: "sensors-view" },
      h("div", { class: "toolbar" }, "企业 Enterprise: ", this.orgSel,
        h("button", { onclick: () => this.load() }, "刷新 Refresh")),
      this.summary, this.error, this.detail, this.groups);
  }

  get visible() { return this.el.isConnected && this.el.offsetParent !== null; }

  async mount(root) {
    root.replaceChildren(this.el);
    if (!this.orgs.length) {
      this.orgs = siteOrgs(await api("/api/orgs"));
      this.catalog = await loadCatalog().catch(() => null);
      this.orgSel.replaceChildren(...this.orgs.map(o => h("option", { value: o.id }, o.name)));
      if (!this.orgs.some(o => o.id === this.orgId)) this.orgId = this.orgs.length ? this.orgs[0].id : null;
      if (this.orgId) this.orgSel.value = String(this.orgId);
    }
    await this.load();
    if (this.selected != null && this.points.has(this.selected)) await this.open(this.selected); // its chart was disposed
    clearInterval(this.timer);
    this.timer = setInterval(() => this.poll(), 1000);
  }

  unmount() { clearInterval(this.timer); this.timer = null; if (this.chart) { this.chart.dispose(); this.chart = null; } }

  async selectOrg(orgId) {
    this.orgId = orgId;
    sessionStorage.setItem(STORE_KEY, String(orgId));
    this.closeDetail();
    await this.load();
  }

  async load() {
    if (!this.orgId) {
      this.groups.replaceChildren(h("p", { class: "muted" }, "没有可见的企业 no enterprise in your scope"));
      return;
    }
    const org = this.orgId;
    let points, installations;
    try {
      [points, installations] = await Promise.all([
        api(`/api/sensors?org_id=${org}&limit=5000`), api(`/api/installations?org_id=${org}`),
      ]);
      this.error.textContent = "";
    } catch (e) { this.error.textContent = e.message; return; }
    if (org !== this.orgId) return; // another enterprise was chosen meanwhile
    this.points = new Map(points.map(p => [p.id, { ...p, value: p.last_value }]));
    this.render(installations);
    this.lastPoll = Date.now();
  }

  render(installations) {
    this.cards = new Map();
    const byInst = new Map();
    for (const p of this.points.values()) {
      const key = p.installation_id ?? 0;
      if (!byInst.has(key)) byInst.set(key, []);
      byInst.get(key).push(p);
    }
    const groups = [];
    const named = installations.filter(i => byInst.has(i.id));
    for (const inst of [...named, ...(byInst.has(0) ? [{ id: 0, name: "未分区 no installation", kind: "" }] : [])]) {
      const cards = byInst.get(inst.id).map(p => this.card(p));
      groups.push(h("section", { class: "installation", "data-installation": inst.id },
        h("h3", {}, inst.name, " ", h("span", { class: "kind" }, INSTALLATION_KINDS[inst.kind] || inst.kind || ""),
          inst.major_hazard ? h("span", { class: "kind hazard" }, "重大危险源 major hazard") : "",
          inst.process_name ? h("span", { class: "muted" }, " " + inst.process_name) : ""),
        h("div", { class: "points" }, cards)));
    }
    if (!groups.length) groups.push(h("p", { class: "muted" }, "暂无测点 no points"));
    this.groups.replaceChildren(...groups);
    this.renderSummary();
  }

  renderSummary() {
    const all = [...this.points.values()];
    const count = f => all.filter(f).length;
    this.summary.textContent = `测点 points ${all.length} · 在线 online ${count(p => p.online)} · 离线 offline ${count(p => !p.online)}` +
      ` · 预警 warning ${count(p => p.level)} · 故障 fault ${count(p => p.fault)} · 迟报 slow ${count(p => p.slow)}`;
  }

  card(p) {
    const el = h("button", { class: "point", "data-sensor": p.id, type: "button", onclick: () => this.open(p.id) });
    this.cards.set(p.id, el);
    this.paint(p);
    return el;
  }

  // Redraw one card from its point's state (cheap: called for every pushed value).
  paint(p) {
    const el = this.cards.get(p.id);
    if (!el) return;
    el.dataset.level = p.level || "";
    el.dataset.online = p.online ? "1" : "0";
    el.dataset.kind = p.kind;
    const badges = [h("span", { class: `badge-state ${p.online ? "online" : "offline"}` }, p.online ? "在线 online" : "离线 offline")];
    if (p.fault) badges.push(h("span", { class: "badge-state fault", title: p.fault }, "故障 fault"));
    if (p.slow) badges.push(h("span", { class: "badge-state slow" }, "迟报 slow"));
    if (p.level) badges.push(levelChip(p.level));
    el.replaceChildren(
      h("div", { class: "point-head" }, h("strong", { class: "tag" }, p.tag), " ", h("span", { class: "muted" }, p.name || KINDS[p.kind] || p.kind)),
      h("div", { class: "point-value" }, fmtPoint(p.kind, p.value, p.unit)),
      h("div", { class: "point-badges" }, badges),
      h("div", { class: "muted point-time" }, fmtTime(p.last_reading_at)));
    el.classList.toggle("selected", this.selected === p.id);
  }

  // "sensor.values" from the push: one event per flush and enterprise.
  onValues(data) {
    if (!data || data.org_id !== this.orgId || !Array.isArray(data.values)) return;
    for (const v of data.values) {
      const p = this.points.get(v.sensor_id);
      if (!p) continue;
      p.value = v.value;
      p.last_reading_at = v.at;
      p.level = v.level || "";
      p.online = true;
      this.paint(p);
      if (this.selected === p.id && this.chart) { this.chart.append(v.value, v.at); this.paintDetailState(p); }
    }
    this.renderSummary();
  }

  // "sensor.state": online/offline/fault/recovered/slow of one point.
  onState(data) {
    const p = data && this.points.get(data.sensor_id);
    if (!p) return;
    if (data.state === "online") p.online = true;
    else if (data.state === "offline") p.online = false;
    else if (data.state === "fault") p.fault = data.fault || "out_of_range";
    else if (data.state === "recovered") p.fault = "";
    else if (data.state === "slow") p.slow = true;
    this.paint(p);
    this.renderSummary();
  }

  // A warning event: the point's level follows the warning (opened/escalated/downgraded/cleared).
  onWarning(data, kind) {
    const p = data && this.points.get(data.sensor_id);
    if (!p) return;
    if (kind === "warning.cleared") p.level = "";
    else if (data.level && kind !== "warning.notice" && kind !== "warning.updated") p.level = data.level;
    this.paint(p);
    this.renderSummary();
  }

  async poll() {
    if (!this.visible || document.hidden || !this.orgId) return;
    const every = pushOpen() ? POLL_PUSHED_MS : POLL_FALLBACK_MS;
    if (Date.now() - this.lastPoll < every) return;
    this.lastPoll = Date.now();
    const org = this.orgId;
    let live;
    try { live = await api(`/api/sensors/live?org_id=${org}`); } catch (_) { return; }
    if (org !== this.orgId) return;
    for (const v of live) {
      const p = this.points.get(v.id);
      if (!p) { this.load(); return; } // a new point: rebuild the groups
      Object.assign(p, { value: v.value, last_reading_at: v.last_reading_at, level: v.level, online: v.online, fault: v.fault, slow: v.slow });
      this.paint(p);
    }
    this.renderSummary();
  }

  async open(id) {
    const p = this.points.get(id);
    if (!p) return;
    const previous = this.selected;
    this.selected = id;
    if (previous != null && this.points.get(previous)) this.paint(this.points.get(previous));
    this.paint(p);
    this.detail.hidden = false;
    this.el.classList.add("with-detail");
    const th = p.thresholds || {};
    this.chartEl = h("div", { id: "trend-chart", class: "trend-chart", "data-sensor": id });
    this.rangeInfo = h("span", { class: "muted" });
    this.stateLine = h("div", { class: "detail-state" });
    const rangeButtons = RANGES.map(([hours, label]) => h("button", { class: "small", "data-range": hours,
      onclick: () => { this.rangeH = hours; this.loadTrend(); } }, label));
    this.rangeButtons = rangeButtons;
    this.csv = h("a", { class: "button small", download: `${p.tag}.csv` }, "导出 CSV Export");
    const cams = (p.cameras || []).map(c => h("button", { class: "small", "data-camera": c, onclick: () => this.actions.live(c) },
      "▶ ", cameraLabel(this.catalog, c)));
    this.eventsList = h("ul", { class: "sensor-events" });
    this.detail.replaceChildren(
      h("div", { class: "detail-head" },
        h("h3", {}, p.tag, " ", h("span", { class: "muted" }, p.name || ""), " ", h("span", { class: "kind" }, KINDS[p.kind] || p.kind)),
        h("button", { class: "small", title: "关闭 Close", onclick: () => this.closeDetail() }, "✕")),
      this.stateLine,
      h("div", { class: "thresholds" },
        ["hh", "h", "l", "ll", "rate"].filter(k => th[k] != null).map(k => h("span", { class: `th th-${k}` }, `${CAUSES[k]}: ${fmtValue(th[k], k === "rate" ? `${p.unit}/min` : p.unit)}`)),
        p.range_min != null || p.range_max != null ? h("span", { class: "muted" }, `量程 range ${p.range_min ?? "–"} … ${p.range_max ?? "–"} ${p.unit}`) : ""),
      cams.length ? h("div", { class: "toolbar" }, "联动摄像机 Cameras: ", cams) : "",
      h("div", { class: "toolbar" }, "趋势 Trend: ", rangeButtons, this.csv, this.rangeInfo),
      this.chartEl,
      h("details", {}, h("summary", {}, "测点事件 point events"), this.eventsList));
    this.paintDetailState(p);
    if (this.chart) this.chart.dispose();
    this.chart = new TrendChart(this.chartEl);
    await this.loadTrend();
    this.loadEvents(id);
  }

  paintDetailState(p) {
    if (!this.stateLine) return;
    this.stateLine.replaceChildren("当前 now: ", h("strong", { class: "detail-value" }, fmtPoint(p.kind, p.value, p.unit)), " ",
      levelChip(p.level), " ", h("span", { class: "muted" }, fmtTime(p.last_reading_at)));
  }

  async loadTrend() {
    const p = this.points.get(this.selected);
    if (!p || !this.chart) return;
    this.rangeButtons.forEach(b => b.classList.toggle("active", Number(b.dataset.range) === this.rangeH));
    const end = new Date();
    const range = { start: new Date(end.getTime() - this.rangeH * 3600e3), end };
    const q = new URLSearchParams({ start: range.start.toISOString(), end: range.end.toISOString() });
    let body;
    try { body = await api(`/api/sensors/${p.id}/readings?${q}`); }
    catch (e) { this.rangeInfo.textContent = `读数查询失败 readings failed: ${e.message}`; return; }
    const rows = body.rows || [];
    const stepText = STEP_LABEL[body.step] || `${body.step} s`;
    this.rangeInfo.textContent = `${describeRange(range)} · ${rows.length} · ${stepText}${body.truncated ? " · 已截断 truncated" : ""}`;
    this.csv.href = withToken(`/api/sensors/${p.id}/readings.csv?${q}`);
    this.chartEl.dataset.rows = rows.length;
    this.chartEl.dataset.step = body.step;
    await this.chart.show(p, rows, range);
  }

  async loadEvents(id) {
    let events = [];
    try { events = await api(`/api/sensors/${id}/events?limit=20`); } catch (_) { return; }
    if (this.selected !== id) return;
    this.eventsList.replaceChildren(...events.map(e => h("li", {}, fmtTime(e.at), " ", EVENT_LABEL[e.kind] || e.kind,
      e.detail && e.detail.reason ? h("span", { class: "muted" }, " " + e.detail.reason) : "")));
    if (!events.length) this.eventsList.append(h("li", { class: "muted" }, "无 none"));
  }

  closeDetail() {
    const previous = this.selected;
    this.selected = null;
    if (previous != null && this.points.get(previous)) this.paint(this.points.get(previous));
    this.detail.hidden = true;
    this.el.classList.remove("with-detail");
    if (this.chart) { this.chart.dispose(); this.chart = null; }
  }
}
