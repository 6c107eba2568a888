// 集群 Cluster: the nodes of a scaled-out installation (GET /api/cluster) — role, alive,
// heartbeat age, cameras held, load — and the cameras no live node holds.  A single node
// (role all) says so.
import { api, h } from "./api.js";
import { errorText } from "./admin_common.js";

const ROLE_NAMES = { all: "单节点 all-in-one", control: "控制 control", media: "媒体 media", analyzer: "分析 analyzer" };

export class ClusterPanel {
  constructor() {
    this.error = h("p", { class: "error", role: "alert" });
    this.summary = h("p", { class: "muted cluster-summary" });
    this.table = h("table", { id: "cluster-nodes" });
    this.el = h("section", { class: "admin-cluster" },
      h("h3", {}, "集群 Cluster"), this.error, this.summary, this.table);
  }

  async mount(root) { root.append(this.el); await this.refresh(); }

  async refresh() {
    let state;
    try { state = await api("/api/cluster"); this.error.textContent = ""; }
    catch (e) { this.error.textContent = errorText(e); this.table.replaceChildren(); return; }
    const me = state.this_node || {};
    const u = state.unplaced || {};
    this.summary.textContent = `本节点 this node: ${ROLE_NAMES[me.role] || me.role || "?"}` +
      (me.node ? ` (${me.node})` : "") +
      ` · 无节点承载的摄像机 unplaced cameras: 媒体 media ${u.media ?? 0}, 分析 analysis ${u.analysis ?? 0}`;
    const head = h("tr", {}, ["节点 Node", "角色 Role", "状态 State", "心跳 Heartbeat", "摄像机 Cameras", "负载 Load", "地址 Host"]
      .map(t => h("th", {}, t)));
    const rows = (state.nodes || []).map(n => h("tr", { "data-node": n.name, "data-alive": String(n.alive) },
      h("td", {}, h("strong", {}, n.name)),
      h("td", {}, ROLE_NAMES[n.role] || n.role),
      h("td", {}, h("span", { class: n.alive ? "online" : "offline" }, n.alive ? "在线 alive" : "离线 gone")),
      h("td", {}, `${n.age_s} s 前 ago`),
      h("td", {}, Object.entries(n.cameras || {}).map(([k, v]) => `${k} ${v}`).join(" · ") || "—"),
      h("td", { class: "muted" }, loadText(n.load || {})),
      h("td", {}, h("code", {}, n.host || ""))));
    this.table.replaceChildren(head, ...rows);
    if (!rows.length) {
      this.table.append(h("tr", {}, h("td", { colspan: 7, class: "muted" },
        "单节点运行，无集群节点 one node, no cluster nodes (cluster.role = all)")));
    }
  }
}

function loadText(load) {
  const parts = [];
  if (load.streams != null) parts.push(`流 streams ${load.streams}`);
  if (load.analysed != null) parts.push(`分析 analysed ${load.analysed}`);
  if (load.cpu_percent != null) parts.push(`CPU ${Math.round(load.cpu_percent)} %`);
  if (load.alarms_handled != null) parts.push(`报警 alarms ${load.alarms_handled}`);
  if (load.alarms_spooled) parts.push(`待发 spooled ${load.alarms_spooled}`);
  return parts.join(" · ");
}
