// Device alarms (GB28181 Alarm from NVRs and cameras): a panel under the AI alarms, live
// pushes as pop-ups, and the ResetAlarm button (sent to the device with the alarm's Info).
import { ApiError, api, fmtTime, h, session } from "./api.js";

const PRIORITY = { 1: "一级 1", 2: "二级 2", 3: "三级 3", 4: "四级 4" };

export async function resetDeviceAlarm(id) {
  return api(`/api/device-alarms/${id}/reset`, { method: "POST", body: "{}" });
}

function source(a) {
  return [a.channel_name || "", h("div", {}, h("code", {}, a.source_id))];
}

export class DeviceAlarmsPanel {
  constructor(actions) {
    this.actions = actions;
    this.filter = { reset: "false", priority: "" };
    this.table = h("table", { id: "device-alarms" });
    this.error = h("p", { class: "error", role: "alert" });
    this.summary = h("span", { class: "muted" });
    const resetSel = h("select", { "aria-label": "复位状态 reset", onchange: e => { this.filter.reset = e.target.value; this.refresh(); } },
      h("option", { value: "false" }, "未复位 not reset"), h("option", { value: "true" }, "已复位 reset"), h("option", { value: "" }, "全部 all"));
    const prioSel = h("select", { "aria-label": "报警级别 priority", onchange: e => { this.filter.priority = e.target.value; this.refresh(); } },
      h("option", { value: "" }, "全部级别 all priorities"), Object.entries(PRIORITY).map(([k, v]) => h("option", { value: k }, v)));
    this.el = h("section", { class: "device-alarms" },
      h("h3", {}, "设备报警 Device alarms ", h("small", { class: "muted" }, "GB28181")),
      h("div", { class: "toolbar" }, resetSel, " ", prioSel, " ",
        h("button", { onclick: () => this.refresh() }, "刷新 Refresh"), " ", this.summary),
      this.error, this.table);
  }

  async mount(root) {
    root.append(this.el);
    await this.refresh();
  }

  async refresh() {
    const q = new URLSearchParams({ limit: "100" });
    if (this.filter.reset) q.set("reset", this.filter.reset);
    if (this.filter.priority) q.set("priority", this.filter.priority);
    let rows;
    try {
      const resp = await fetch(`/api/device-alarms?${q}`, { headers: { Authorization: "Bearer " + session.token } });
      if (!resp.ok) throw new ApiError(resp.status, (await resp.json().catch(() => ({}))).detail || resp.statusText);
      this.summary.textContent = `共 total ${resp.headers.get("X-Total-Count") || "?"}`;
      rows = await resp.json();
      this.error.textContent = "";
    } catch (e) { this.error.textContent = e.message; return; }
    const head = h("tr", {}, ["时间 Time", "来源 Source", "设备 Device", "级别 Priority", "方式 Method", "类型 Type", "描述 Description", "状态 State", "操作 Actions"].map(t => h("th", {}, t)));
    this.table.replaceChildren(head, ...rows.map(a => this.row(a)));
    if (!rows.length) this.table.append(h("tr", {}, h("td", { colspan: 9, class: "muted" }, "暂无设备报警 no device alarms")));
  }

  row(a) {
    const reset = h("button", { class: "small act-reset", onclick: () => this.reset(a, reset) }, "复位 Reset");
    return h("tr", { "data-device-alarm": a.id, class: a.reset_at ? "" : "active" },
      h("td", {}, fmtTime(a.alarm_time || a.received_at)),
      h("td", {}, source(a)),
      h("td", {}, h("code", {}, a.device_id)),
      h("td", {}, PRIORITY[a.priority] || a.priority),
      h("td", {}, a.method_name),
      h("td", {}, a.type_name, a.event_type ? h("div", { class: "muted" }, `EventType ${a.event_type}`) : ""),
      h("td", {}, a.description),
      h("td", { class: "state" }, a.reset_at ? `已复位 reset ${fmtTime(a.reset_at)}` : "未复位 active"),
      h("td", {}, a.reset_at ? "" : reset, " ",
        a.channel_name ? h("button", { class: "small", onclick: () => this.actions.live(`${a.device_id}/${a.source_id}`) }, "▶ 实时 Live") : ""));
  }

  async reset(a, button) {
    button.disabled = true;
    try { await resetDeviceAlarm(a.id); this.error.textContent = ""; }
    catch (e) { this.error.textContent = `复位 reset: ${e.message}`; button.disabled = false; return; }
    await this.refresh();
  }

  // A pushed device.alarm: refresh the table if shown.
  onEvent() {
    if (this.el.isConnected) this.refresh();
  }
}

// The pop-up for a pushed device alarm, into the shared alarm panel.
export function deviceAlarmToast(push, a, actions) {
  const close = () => el.remove();
  const reset = h("button", { class: "small", onclick: async () => {
    try { await resetDeviceAlarm(a.id); reset.disabled = true; reset.textContent = "已复位 reset"; }
    catch (e) { reset.textContent = e.message; }
  } }, "复位 Reset");
  const el = h("div", { class: "toast device-alarm-toast", role: "alert", "data-device-alarm": a.id },
    h("div", { class: "toast-body" },
      h("strong", {}, "⚠ 设备报警 Device alarm: ", a.type_name || a.method_name || ""),
      h("div", {}, a.channel_name || "", " ", h("code", {}, a.source_id)),
      h("div", { class: "muted" }, `${PRIORITY[a.priority] || ""} · ${a.method_name || ""} · ${fmtTime(a.alarm_time || a.received_at)}`),
      a.description ? h("div", {}, a.description) : "",
      h("div", {}, reset, " ",
        a.channel_name ? h("button", { class: "small", onclick: () => { actions.live(`${a.device_id}/${a.source_id}`); close(); } }, "▶ 实时 Live") : "",
        " ", h("button", { class: "small", onclick: close }, "✕"))));
  push.show(el);
  setTimeout(close, 60000);
}
