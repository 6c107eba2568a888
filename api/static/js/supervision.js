// Supervision (spec/sensors.md §6): live offline figures per enterprise, the weekly and monthly
// reports (CSV and a printable page), and alarms or warnings left open too long.
import { api, fmtTime, h, withToken } from "./api.js";
import { LEVELS } from "./levels.js";

const KIND = { weekly: "周报 weekly", monthly: "月报 monthly" };
const HANDLING = { new: "待确认 new", acknowledged: "已确认 acknowledged", handled: "已处置 handled", closed: "已关闭 closed" };
const REFRESH_MS = 60000;

export const ROUTES = {
  live: "/api/supervision/live",
  reports: "/api/supervision/reports",
  overdue: "/api/supervision/overdue-alarms",
  csv: id => `/api/supervision/reports/${id}/export.csv`,
  page: id => `/api/supervision/reports/${id}/print`,
};

function pct(rate) { return rate == null ? "–" : `${(rate * 100).toFixed(2)} %`; }

export class SupervisionView {
  constructor(actions) {
    this.actions = actions;
    this.limit = null;
    this.timer = null;
    this.error = h("p", { class: "error", role: "alert" });
    this.live = h("table", { id: "supervision-live" });
    this.reports = h("table", { id: "supervision-reports" });
    this.overdue = h("table", { id: "supervision-overdue" });
    this.el = h("div", { class: "supervision-view" },
      h("div", { class: "toolbar" }, h("button", { onclick: () => this.refresh() }, "刷新 Refresh")),
      this.error,
      h("h3", {}, "在线情况 Online now"), this.live,
      h("h3", {}, "周报与月报 Weekly and monthly reports"), this.reports,
      h("h3", {}, "超时未销警 Overdue alarms and warnings"), this.overdue);
  }

  async mount(root) {
    root.replaceChildren(this.el);
    await this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => { if (this.el.offsetParent !== null && !document.hidden) this.refresh(); }, REFRESH_MS);
  }

  async refresh() {
    const failed = [];
    await this.loadReports().catch(e => failed.push(e.message)); // first: it brings the rate limit
    const results = await Promise.allSettled([this.loadLive(), this.loadOverdue()]);
    failed.push(...results.filter(r => r.status === "rejected").map(r => r.reason.message));
    this.error.textContent = failed.join(" · ");
  }

  async loadLive() {
    const rows = await api(ROUTES.live);
    const head = h("tr", {}, ["企业 Enterprise", "测点在线 points online", "测点离线 points offline", "摄像机在线 cameras online",
      "摄像机离线 cameras offline", "今日离线率 today", "本周离线率 this week"].map(t => h("th", {}, t)));
    const over = r => this.limit != null && r > this.limit;
    this.live.replaceChildren(head, ...rows.map(r => h("tr", { "data-org": r.org_id },
      h("td", {}, r.name),
      h("td", { class: "online" }, r.sensors_online), h("td", { class: r.sensors_offline ? "offline" : "" }, r.sensors_offline),
      h("td", { class: "online" }, r.cameras_online), h("td", { class: r.cameras_offline ? "offline" : "" }, r.cameras_offline),
      h("td", { class: over(r.today_rate) ? "offline" : "" }, pct(r.today_rate)),
      h("td", { class: over(r.week_rate) ? "offline" : "" }, pct(r.week_rate)))));
    if (!rows.length) this.live.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "无 none")));
  }

  async loadReports() {
    const rows = await api(ROUTES.reports);
    const head = h("tr", {}, ["类型 Kind", "周期 Period", "生成 Generated", "企业 enterprises", "预警通知 notices",
      "约谈 interviews", "区域约谈 area", "重点 key targets", "超时 overdue", "下载 Download"].map(t => h("th", {}, t)));
    this.reports.replaceChildren(head, ...rows.map(r => h("tr", { "data-report": r.id },
      h("td", {}, KIND[r.kind] || r.kind),
      h("td", {}, `${r.period_start} — ${r.period_end}`),
      h("td", {}, fmtTime(r.generated_at)),
      h("td", {}, r.enterprises), h("td", { class: r.warning_notices ? "offline" : "" }, r.warning_notices),
      h("td", { class: r.interviews ? "offline" : "" }, r.interviews), h("td", {}, r.area_interviews),
      h("td", {}, r.key_targets), h("td", {}, r.overdue_alarms),
      h("td", {}, h("a", { class: "button small csv", href: withToken(ROUTES.csv(r.id)), download: "" }, "CSV"), " ",
        h("a", { class: "button small print", href: withToken(ROUTES.page(r.id)), target: "_blank", rel: "noopener" }, "打印 Print")))));
    if (!rows.length) this.reports.append(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "暂无报告 no reports yet")));
    // The limit the rules use (supervision.offline_rate_limit) comes with each report.
    if (rows.length && this.limit == null) {
      try { this.limit = (await api(`${ROUTES.reports}/${rows[0].id}`)).limits.offline_rate_limit; } catch (_) { /* no colours */ }
    }
  }

  async loadOverdue() {
    const rows = await api(ROUTES.overdue);
    const head = h("tr", {}, ["来源 Source", "企业 Enterprise", "内容 What", "级别 Level", "发生 Raised", "持续 Open", "状态 Status", "处置 Handling", ""].map(t => h("th", {}, t)));
    this.overdue.replaceChildren(head, ...rows.map(r => h("tr", { "data-ref": r.ref, class: r.active ? "active" : "" },
      h("td", {}, r.source === "video" ? "视频报警 video" : "传感器预警 sensor"),
      h("td", {}, r.org_name),
      h("td", {}, r.what),
      h("td", {}, r.level ? h("span", { class: "level-chip", "data-level": r.level }, LEVELS[r.level] || r.level) : ""),
      h("td", {}, fmtTime(r.raised_at)),
      h("td", {}, `${Number(r.open_hours).toFixed(1)} 小时 h`),
      h("td", { class: r.active ? "alarm-on" : "alarm-off" }, r.active ? "未消除 active" : "已消除 cleared"),
      h("td", {}, HANDLING[r.handling] || r.handling),
      h("td", {}, h("button", { class: "small", onclick: () => this.actions.openRef(r.source, r.ref) }, "查看 Open")))));
    if (!rows.length) this.overdue.append(h("tr", {}, h("td", { colspan: 9, class: "muted" }, "无 none")));
  }
}
