// Reports from the level below (this node as a receiver): the Tables 2/3/4 the counties and
// enterprises under this city or province posted, newest first, with the alarm pictures.
import { ApiError, fmtTime, h, session, withToken } from "./api.js";

const TABLES = { table4: "报警/销警 Alarm/clear", table3: "运行状态 Run status", table2: "设备信息 Device info" };

async function fetchList(path) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + session.token } });
  if (!resp.ok) throw new ApiError(resp.status, (await resp.json().catch(() => ({}))).detail || resp.statusText);
  return { rows: await resp.json(), total: resp.headers.get("X-Total-Count") || "?" };
}

export class IntakeView {
  constructor() {
    this.filter = { table: "table4", alarm_status: "" };
    this.orgs = new Map();
    this.table = h("table", { id: "intake" });
    this.error = h("p", { class: "error", role: "alert" });
    this.summary = h("span", { class: "muted" });
    const tableSel = h("select", { "aria-label": "表 table", onchange: e => { this.filter.table = e.target.value; this.refresh(); } },
      Object.entries(TABLES).map(([k, v]) => h("option", { value: k }, v)), h("option", { value: "" }, "全部 all"));
    const statusSel = h("select", { "aria-label": "状态 status", onchange: e => { this.filter.alarm_status = e.target.value; this.refresh(); } },
      h("option", { value: "" }, "报警和销警 alarms and clears"), h("option", { value: "1" }, "报警 alarms"), h("option", { value: "0" }, "销警 clears"));
    this.el = h("section", { class: "intake" },
      h("h3", {}, "下级上报 Reports from below ", h("small", { class: "muted" }, "表2/表3/表4 Tables 2-4")),
      h("div", { class: "toolbar" }, tableSel, " ", statusSel, " ",
        h("button", { onclick: () => this.refresh() }, "刷新 Refresh"), " ", this.summary),
      this.error, this.table);
  }

  async mount(root) {
    root.replaceChildren(this.el);
    try {
      const { rows } = await fetchList("/api/orgs");
      this.orgs = new Map(rows.map(o => [o.id, o.name]));
    } catch (_) { /* names are a convenience: ids still show */ }
    await this.refresh();
  }

  async refresh() {
    const q = new URLSearchParams({ limit: "100" });
    for (const [k, v] of Object.entries(this.filter)) if (v) q.set(k, v);
    let page;
    try { page = await fetchList(`/api/intake?${q}`); this.error.textContent = ""; }
    catch (e) { this.error.textContent = e.message; return; }
    this.summary.textContent = `共 total ${page.total}`;
    const head = h("tr", {}, ["接收时间 Received", "上报单位 From", "表 Table", "上报时间 Reported", "类型 Type", "状态 Status",
      "设备编码 Device", "视频通道 Camera", "图片 Picture", "转报 Relayed"].map(t => h("th", {}, t)));
    this.table.replaceChildren(head, ...page.rows.map(r => this.row(r)));
    if (!page.rows.length) this.table.append(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "暂无上报 nothing received")));
  }

  row(r) {
    const status = r.table === "table4" ? (r.alarm_status === "1" ? "报警 alarm" : "销警 clear")
      : r.table === "table3" ? (r.run_status === "1" ? "正常 normal" : "异常 abnormal") : r.company_code;
    const picture = r.image_url
      ? h("a", { href: withToken(r.image_url), target: "_blank", rel: "noopener" },
        h("img", { class: "intake-thumb", src: withToken(r.image_url), alt: r.alarm_id, loading: "lazy" }))
      : "";
    return h("tr", { "data-intake": r.id, class: r.alarm_status === "1" ? "active" : "" },
      h("td", {}, fmtTime(r.received_at)),
      h("td", {}, this.orgs.get(r.source_org_id) || `#${r.source_org_id}`),
      h("td", {}, TABLES[r.table] || r.table),
      h("td", {}, r.reported_time),
      h("td", {}, r.alarm_type ? h("code", {}, r.alarm_type) : ""),
      h("td", { class: "state" }, status),
      h("td", {}, h("code", {}, r.device_code)),
      h("td", {}, r.video_code ? h("code", {}, r.video_code) : ""),
      h("td", {}, picture),
      h("td", {}, r.relayed_to ? `→ ${r.relayed_to}` : "—"));
  }
}
