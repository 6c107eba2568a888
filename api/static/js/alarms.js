// Alarms: list with snapshots, closed-loop handling buttons, and live pop-ups from the event push.
import { api, fmtTime, h, withToken } from "./api.js";
import { cachedCatalog, cameraKey, cameraLabel, loadCatalog } from "./catalog.js";

const HANDLING = {
  new: "待确认 new", acknowledged: "已确认 acknowledged", handled: "已处置 handled", closed: "已关闭 closed",
};
// Which button moves an alarm on from each handling state (spec/alarms.md §5.6).
const NEXT_ACTION = {
  new: ["acknowledge", "确认 Ack"], acknowledged: ["handle", "处置 Handle"], handled: ["close", "关闭 Close"],
};
const RULE_NAME = {
  fire: "明火 fire", smoke: "烟雾 smoke", no_helmet: "未戴安全帽 no helmet", phone: "打电话 phone",
  smoking: "抽烟 smoking", intrusion: "区域入侵 intrusion", fence: "翻越围栏 climbing", off_duty: "离岗 off duty",
  gathering: "人员聚集 gathering", no_workwear: "未穿工服 no workwear", extinguisher: "灭火器缺失 extinguisher",
  static_discharge: "静电释放不足 static discharge", sleeping: "睡岗 sleeping",
};

export function imageUrl(alarm, status = 1) {
  const base = alarm.image_url || `/api/alarms/${alarm.alarm_id}/image?status=${status}`;
  return withToken(base);
}

export function typeName(a) {
  return a.type_name || RULE_NAME[a.rule] || a.rule || "";
}

// POST the action; the alarms API takes {action, note, force} on /actions (force: close or
// mark false an alarm whose rule still holds, with a note saying why).
export async function act(alarmId, action, note = "", force = false) {
  return api(`/api/alarms/${alarmId}/actions`, { method: "POST", body: JSON.stringify({ action, note, force }) });
}

function thumb(a) {
  const img = h("img", { class: "thumb", loading: "lazy", alt: "抓拍 snapshot", src: imageUrl(a) });
  img.addEventListener("error", () => img.replaceWith(h("span", { class: "muted" }, "无图 no image")));
  img.addEventListener("click", () => window.open(img.src, "_blank"));
  return img;
}

export class AlarmsView {
  constructor(actions) {
    this.actions = actions;
    this.filter = { handling: "", active: "" };
    this.fresh = new Set(); // alarms pushed as new a moment ago: their rows flash
    this.table = h("table", { id: "alarms" });
    this.error = h("p", { class: "error", role: "alert" });
    const handlingSel = h("select", { "aria-label": "处置状态 handling", onchange: e => { this.filter.handling = e.target.value; this.refresh(); } },
      h("option", { value: "" }, "全部 all"), Object.entries(HANDLING).map(([k, v]) => h("option", { value: k }, v)));
    const activeSel = h("select", { "aria-label": "报警状态 status", onchange: e => { this.filter.active = e.target.value; this.refresh(); } },
      h("option", { value: "" }, "全部 all"), h("option", { value: "active" }, "报警中 active"), h("option", { value: "cleared" }, "已销警 cleared"));
    this.summary = h("p", { class: "summary", id: "alarm-summary" });
    this.csv = h("a", { class: "button", download: "alarms.csv" }, "导出 CSV Export");
    this.el = h("div", { class: "alarms-view" },
      h("div", { class: "toolbar" }, "处置 Handling: ", handlingSel, " 状态 Status: ", activeSel,
        h("button", { onclick: () => this.refresh() }, "刷新 Refresh"), this.csv),
      this.summary, this.error, this.table);
  }

  async mount(root) {
    root.replaceChildren(this.el);
    this.catalog = await loadCatalog().catch(() => null);
    await this.refresh();
  }

  async refresh() {
    const q = new URLSearchParams({ limit: "200" });
    if (this.filter.handling) q.set("handling", this.filter.handling);
    if (this.filter.active) q.set("status", this.filter.active);
    const filterOnly = new URLSearchParams(q);
    filterOnly.delete("limit");
    this.csv.href = withToken(`/api/alarms/export.csv?${filterOnly}`);
    this.loadSummary(filterOnly);
    let alarms;
    try {
      alarms = await api(`/api/alarms?${q}`);
      this.error.textContent = "";
    } catch (e) { this.error.textContent = e.message; return; }
    // Filter client-side too, in case the server ignores a parameter.
    alarms = alarms.filter(a => (!this.filter.handling || a.handling === this.filter.handling) &&
      (!this.filter.active || (a.active ? "active" : "cleared") === this.filter.active));
    const head = h("tr", {}, ["抓拍 Snapshot", "时间 Time", "类型 Type", "摄像机 Camera", "状态 Status", "处置 Handling", "操作 Actions"].map(t => h("th", {}, t)));
    this.table.replaceChildren(head, ...alarms.map(a => this.row(a)));
    if (!alarms.length) this.table.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "暂无报警 no alarms")));
  }

  // A pushed new alarm: its row flashes for a while (whenever the list shows it).
  markNew(alarmId) {
    if (!alarmId) return;
    this.fresh.add(alarmId);
    setTimeout(() => this.fresh.delete(alarmId), 20000);
  }

  async loadSummary(filter) {
    try {
      const st = await api(`/api/alarms/stats?${filter}`);
      const mins = s => (s == null ? "–" : (s / 60).toFixed(1) + " 分钟 min");
      this.summary.textContent = `共 total ${st.total} · 报警中 active ${st.active} · 误报 false ${st.false_alarms}` +
        ` · 平均确认 mean ack ${mins(st.mean_ack_s)} · 平均关闭 mean close ${mins(st.mean_close_s)}`;
    } catch (_) { this.summary.textContent = ""; }
  }

  row(a) {
    const buttons = [];
    const note = h("input", { class: "note", placeholder: "备注 note", maxlength: 2000, "aria-label": "备注 note" });
    const next = NEXT_ACTION[a.handling];
    const force = h("input", { type: "checkbox", class: "force" });
    const forced = action => (action === "close" || action === "false_alarm") && force.checked;
    if (a.handling !== "closed") buttons.push(note, h("br"));
    if (next) buttons.push(h("button", { class: `small act-${next[0]}`, onclick: () => this.run(a, next[0], note.value, forced(next[0])) }, next[1]));
    if (!a.false_alarm && a.handling !== "closed") {
      buttons.push(h("button", { class: "small act-false_alarm", onclick: () => this.run(a, "false_alarm", note.value, forced("false_alarm")) }, "误报 False"));
    }
    if (a.active && a.handling !== "closed") {
      buttons.push(h("label", { class: "muted", title: "规则仍成立时关闭或标记误报（需备注） close or mark false while the rule holds (note required)" }, force, " 强制 force"));
    }
    const camera = cameraKey(a.device_id, a.video_code);
    buttons.push(h("button", { class: "small", onclick: () => this.actions.live(camera) }, "▶ 实时 Live"));
    buttons.push(h("button", { class: "small", onclick: () => this.actions.replay(camera, a.raised_at) }, "◀ 回放 Replay"));
    const cls = [a.active ? "active" : "", this.fresh.has(a.alarm_id) ? "alarm-flash" : ""].filter(Boolean).join(" ");
    return h("tr", { "data-alarm": a.alarm_id, class: cls },
      h("td", {}, thumb(a)),
      h("td", {}, fmtTime(a.raised_at), a.cleared_at ? h("div", { class: "muted" }, "销警 " + fmtTime(a.cleared_at)) : ""),
      h("td", {}, h("strong", {}, typeName(a)), h("div", { class: "muted" }, `${a.profile || ""} #${a.alarm_type}`)),
      h("td", {}, h("span", { "data-i18n": "off" }, cameraLabel(this.catalog, camera)), h("div", {}, h("code", {}, a.video_code))),
      h("td", { class: a.active ? "alarm-on" : "alarm-off" }, a.active ? "报警中 active" : "已销警 cleared", a.false_alarm ? h("div", { class: "muted" }, "误报 false alarm") : ""),
      h("td", { class: "handling" }, HANDLING[a.handling] || a.handling),
      h("td", { class: "actions" }, buttons));
  }

  async run(alarm, action, note = "", force = false) {
    try {
      await act(alarm.alarm_id, action, note, force);
      this.error.textContent = "";
    } catch (e) { this.error.textContent = `${action}: ${e.message}`; }
    await this.refresh();
  }
}

// Pop-ups for alarms pushed over the event WebSocket; reconnects with backoff, silent if absent.
export class AlarmPush {
  constructor(container, actions, onAlarm = () => {}) {
    this.container = container;
    this.actions = actions;
    this.onAlarm = onAlarm;
    this.onDevice = () => {};
    this.listeners = []; // other views' handlers: every pushed message goes to each
    this.ws = null;
    this.retryMs = 2000;
    this.stopped = true;
    this.maxToasts = 5;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  on(fn) { this.listeners.push(fn); }

  connect() {
    if (this.stopped) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(withToken(`${proto}//${location.host}/api/events/ws`));
    this.ws = ws;
    ws.addEventListener("open", () => { this.retryMs = 2000; this.indicate("open"); });
    ws.addEventListener("message", ev => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      if (msg.kind === "alarm.raised") { this.toast(msg.data); this.onAlarm(msg.data, msg.kind); }
      else if (msg.kind === "alarm.cleared" || msg.kind === "alarm.updated") this.onAlarm(msg.data, msg.kind); // updated: another operator's handling step
      else if (/^(device|catalog)\./.test(msg.kind || "")) this.onDevice(msg.data, msg.kind);
      for (const fn of this.listeners) {
        try { fn(msg); } catch (e) { console.error("push listener", e); }
      }
    });
    ws.addEventListener("close", () => {
      if (this.ws !== ws || this.stopped) return;
      this.indicate("closed");
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 60000);
    });
  }

  // The header dot shows whether alarm pop-ups can arrive (the push channel is open).
  indicate(state) {
    const dot = document.getElementById("push-status");
    if (!dot) return;
    dot.dataset.state = state;
    dot.title = state === "open" ? "报警推送已连接 alarm push connected" : "报警推送断开 alarm push disconnected";
  }

  stop() {
    this.stopped = true;
    this.indicate("closed");
    if (this.ws) { this.ws.close(); this.ws = null; }
    this.container.replaceChildren();
  }

  toast(a) {
    const close = () => el.remove();
    const ack = h("button", { class: "small", onclick: async () => {
      try { await act(a.alarm_id, "acknowledge"); ack.disabled = true; ack.textContent = "已确认 acknowledged"; this.onAlarm(a, "acknowledged"); }
      catch (e) { ack.textContent = e.message; }
    } }, "确认 Ack");
    const el = h("div", { class: "toast", role: "alert", "data-alarm": a.alarm_id },
      h("img", { class: "thumb", alt: "抓拍 snapshot", src: imageUrl(a, 1) }),
      h("div", { class: "toast-body" },
        h("strong", {}, "⚠ 报警 Alarm: ", typeName(a)),
        h("div", {}, h("span", { "data-i18n": "off" }, cameraLabel(cachedCatalog(), cameraKey(a.device_id, a.video_code))), " ", h("code", {}, a.video_code)),
        h("div", { class: "muted" }, fmtTime(a.at)),
        h("div", {}, ack, " ", h("button", { class: "small", onclick: () => { this.actions.live(cameraKey(a.device_id, a.video_code)); close(); } }, "▶ 实时 Live"),
          " ", h("button", { class: "small", onclick: close }, "✕"))));
    this.show(el);
    setTimeout(close, 60000);
  }

  // One pop-up into the panel (video alarms and sensor warnings share it), newest on top.
  show(el) {
    this.container.prepend(el);
    while (this.container.children.length > this.maxToasts) this.container.lastChild.remove();
  }
}
