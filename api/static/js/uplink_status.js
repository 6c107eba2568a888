// Where this node reports to: the superior platforms it cascades to (GB28181 registration,
// keepalives, what each one gets) and the provincial receivers with their outbox (pending,
// failed, delivered, the oldest pending row's age, recent errors, re-sending dead letters).
import { api, fmtTime, h } from "./api.js";
import { errorText, fmtAge } from "./admin_common.js";

export class SuperiorsPanel {
  constructor() {
    this.error = h("p", { class: "error", role: "alert" });
    this.table = h("table", { id: "superiors" });
    this.el = h("section", { class: "admin-superiors" },
      h("h3", {}, "上级平台（级联） Superiors (cascade)"), this.error, this.table);
  }

  async mount(root) { root.append(this.el); await this.refresh(); }

  async refresh() {
    let state;
    try { state = await api("/api/cascade"); this.error.textContent = ""; }
    catch (e) { this.error.textContent = errorText(e); this.table.replaceChildren(); return; }
    const head = h("tr", {}, ["上级 Superior", "地址 Address", "注册 Registration", "心跳 Keepalives",
      "共享通道 Channels shared", "对话/流 Dialogs/streams"].map(t => h("th", {}, t)));
    const rows = state.upstreams.map(u => h("tr", { "data-upstream": u.server_id },
      h("td", {}, h("strong", {}, u.server_id), " ", h("code", {}, u.domain), h("div", { class: "muted" }, `本级编码 our id ${u.local_id}`)),
      h("td", {}, `${u.host}:${u.port} `, h("code", {}, String(u.transport).toUpperCase())),
      h("td", { class: "upstream-registered" },
        h("span", { class: u.registered ? "online" : "offline" }, u.registered ? "已注册 registered" : "未注册 not registered"),
        u.register_status ? h("span", { class: "muted" }, ` (${u.register_status})`) : ""),
      h("td", {}, `已发 sent ${u.keepalives_sent} · 失败 failed ${u.keepalive_failures}`),
      h("td", {}, u.selection.all_channels ? "全部 all" : `选定 selected ${u.selection.selected}`),
      h("td", {}, `${u.dialogs.length} / ${u.streams.length}`)));
    this.table.replaceChildren(head, ...rows);
    if (!rows.length) {
      this.table.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "未配置上级平台 no superiors configured (sip.upstreams)")));
    }
  }
}

export class ReceiversPanel {
  constructor() {
    this.error = h("p", { class: "error", role: "alert" });
    this.message = h("p", { class: "ok-msg", id: "receivers-msg", role: "status" });
    this.table = h("table", { id: "receivers" });
    this.el = h("section", { class: "admin-receivers" },
      h("h3", {}, "省级接收方 Provincial receivers ", h("small", { class: "muted" }, "上报发件箱 uplink outbox")),
      this.error, this.message, this.table);
  }

  async mount(root) { root.append(this.el); await this.refresh(); }

  async refresh() {
    let summary, status;
    try {
      [summary, status] = await Promise.all([api("/api/uplink/receivers"), api("/api/uplink/status")]);
      this.error.textContent = "";
    } catch (e) { this.error.textContent = errorText(e); this.table.replaceChildren(); return; }
    const sender = status.sender || {}; // node-wide figures: global administrators only
    const head = h("tr", {}, ["接收方 Receiver", "待发 Pending", "失败 Failed (dead)", "已送达 Delivered",
      "最早待发 Oldest pending", "最近错误 Recent errors", "操作 Actions"].map(t => h("th", {}, t)));
    const rows = summary.receivers.map(r => this.row(r, sender[r.name]));
    this.table.replaceChildren(head, ...rows);
    if (!rows.length) {
      this.table.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "未配置接收方 no receivers configured (uplink.receivers)")));
    }
  }

  row(r, live) {
    const errors = r.errors.length
      ? h("ul", { class: "receiver-errors" }, r.errors.map(e => h("li", {}, h("span", { class: "error" }, e.error),
        h("span", { class: "muted" }, ` ×${e.count} · ${fmtTime(e.at)}`))))
      : h("span", { class: "muted" }, "—");
    const resend = async () => {
      try {
        const got = await api("/api/uplink/outbox/resend", { method: "POST", body: JSON.stringify({ receiver: r.name }) });
        this.message.textContent = `${r.name}: 已重新排队 requeued ${got.requeued}`;
        await this.refresh();
      } catch (e) { this.error.textContent = `${r.name}: ${errorText(e)}`; }
    };
    return h("tr", { "data-receiver": r.name },
      h("td", {}, h("strong", {}, r.name), " ",
        h("code", {}, r.tables.map(t => t.replace("table", "表")).join(" ") || "—"), " ",
        r.configured ? h("span", { class: "muted" }, r.format) : h("span", { class: "offline" }, "已移除配置 no longer configured"),
        live && live.last_error ? h("div", { class: "muted" }, `发送器 sender: ${live.last_error} (${fmtTime(live.last_error_at)})`) : ""),
      h("td", { class: "pending", "data-count": r.pending }, String(r.pending),
        r.retrying ? h("span", { class: "muted" }, ` (重试中 retrying ${r.retrying})`) : ""),
      h("td", { class: "dead", "data-count": r.dead }, h("span", { class: r.dead ? "offline" : "" }, String(r.dead))),
      h("td", { class: "sent", "data-count": r.sent }, String(r.sent),
        r.last_sent_at ? h("div", { class: "muted" }, `最后 last ${fmtTime(r.last_sent_at)}`) : ""),
      h("td", { class: "oldest" }, fmtAge(r.oldest_pending_age_s)),
      h("td", {}, errors),
      h("td", { class: "actions" },
        h("button", { class: "small receiver-resend", onclick: resend, disabled: !r.dead }, "重发失败 Re-send failed")));
  }
}
