// Where this node reports to: the superior platforms it cascades to (GB28181 registration,
// keepalives, what each one gets) and the provincial receivers with their outbox (pending,
// failed, delivered, the oldest pending row's age, recent errors, re-sending dead letters).
import { ApiError, api, fmtTime, h } from "./api.js";
import { errorText, fmtAge } from "./admin_common.js";
import { loadCatalog } from "./catalog.js";

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
      h("td", { class: "upstream-selection" }, u.selection.all_channels ? "全部 all" : `选定 selected ${u.selection.selected}`, " ",
        h("button", { class: "small upstream-channels", onclick: () => this.choose(u) }, "选择通道 Choose")),
      h("td", {}, `${u.dialogs.length} / ${u.streams.length}`)));
    this.table.replaceChildren(head, ...rows);
    if (!rows.length) {
      this.table.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "未配置上级平台 no superiors configured (sip.upstreams)")));
    }
  }

  // The channels a superior gets: the caller's cameras with checkboxes, or all channels;
  // saved with PUT /api/cascade/{id}/channels (global administrators only), errors shown here.
  async choose(u) {
    const error = h("p", { class: "error cascade-error", role: "alert" });
    const status = h("span", { class: "muted cascade-saved" });
    const all = h("input", { type: "checkbox", class: "cascade-all" });
    const list = h("div", { class: "cascade-channels" }, h("p", { class: "muted" }, "加载中… loading…"));
    const filter = h("input", { class: "cascade-filter", placeholder: "筛选 filter", size: 16 });
    const save = h("button", { class: "cascade-save active", disabled: true }, "保存 Save");
    const close = h("button", { class: "cascade-close" }, "关闭 Close");
    const dialog = h("dialog", { class: "cascade-dialog", "data-upstream": u.server_id },
      h("h3", {}, "级联通道 Channels for ", h("code", {}, u.server_id)),
      h("p", { class: "muted" }, "全部通道 = 未分类的每个通道 all channels = every channel that is not classified"),
      h("div", { class: "toolbar" }, h("label", {}, all, " 全部通道 All channels"), " ", filter),
      list, error, h("div", { class: "toolbar" }, save, close, status));
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
    let selection, catalog;
    try {
      [selection, catalog] = await Promise.all([api(`/api/cascade/${encodeURIComponent(u.server_id)}/channels`), loadCatalog()]);
    } catch (e) { list.replaceChildren(); error.textContent = errorText(e); return; }
    const orgs = new Map(catalog.orgs.map(o => [o.id, o.name]));
    const chosen = new Set(selection.channel_ids);
    const seen = new Set();
    const rows = [];
    for (const c of [...catalog.channels.values()].sort((a, b) => a.channel_id.localeCompare(b.channel_id))) {
      if (seen.has(c.channel_id)) continue; // a superior selects channel IDs
      seen.add(c.channel_id);
      const box = h("input", { type: "checkbox", class: "cascade-channel", value: c.channel_id, checked: chosen.has(c.channel_id) });
      box.addEventListener("change", () => { box.checked ? chosen.add(c.channel_id) : chosen.delete(c.channel_id); });
      rows.push(h("label", { class: "cascade-row", "data-channel": c.channel_id }, box, " ", c.name || c.channel_id, " ",
        h("code", {}, c.channel_id), h("span", { class: "muted" }, ` ${orgs.get(c.device.org_id) || ""} · ${c.device.name || c.device.device_id}`)));
    }
    list.replaceChildren(...rows);
    if (!rows.length) list.append(h("p", { class: "muted" }, "无通道 no channels"));
    const sync = () => { for (const r of rows) r.querySelector("input").disabled = all.checked; list.classList.toggle("disabled", all.checked); };
    all.checked = selection.all_channels;
    all.addEventListener("change", sync);
    sync();
    filter.addEventListener("input", () => {
      const q = filter.value.trim().toLowerCase();
      for (const r of rows) r.hidden = !!q && !r.textContent.toLowerCase().includes(q);
    });
    save.disabled = false;
    save.addEventListener("click", async () => {
      error.textContent = status.textContent = "";
      try {
        const got = await api(`/api/cascade/${encodeURIComponent(u.server_id)}/channels`, {
          method: "PUT", body: JSON.stringify({ all_channels: all.checked, channel_ids: [...chosen].sort() }),
        });
        status.textContent = `已保存 saved: ${got.all_channels ? "全部 all" : `选定 selected ${got.channel_ids.length}`} · 共享 shared ${got.shared.length}`;
        await this.refresh();
      } catch (e) { error.textContent = cascadeError(e); }
    });
  }
}

// The selection PUT's 422 names the unknown channels ({detail, channel_ids}).
function cascadeError(e) {
  if (e instanceof ApiError) {
    try {
      const d = JSON.parse(e.message);
      if (d && Array.isArray(d.channel_ids)) return `${e.status} ${d.detail || ""}: ${d.channel_ids.join(", ")}`;
    } catch (_) { /* a plain message */ }
  }
  return errorText(e);
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
