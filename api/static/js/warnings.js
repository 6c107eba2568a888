// Sensor warnings: the list with level colours and filters, a warning's escalation history,
// its linked cameras' snapshots and bookmarks, the closed-loop handling; live from warning.*.
import { api, fmtTime, h, withToken } from "./api.js";
import { cameraKey, cameraLabel, cachedCatalog, loadCatalog } from "./catalog.js";
import { CAUSES, LEVELS, LEVEL_ORDER, fmtValue, levelChip } from "./levels.js";

const HANDLING = {
  new: "待确认 new", acknowledged: "已核实 verified", handled: "已处置 handled", closed: "已关闭 closed",
};
// History entries (WarningEvent.kind) as the timeline names them.
const EVENT_KIND = {
  opened: "开始 opened", escalated: "升级 escalated", downgraded: "降级 downgraded", cleared: "解除 cleared",
  notice: "未降级提醒 notice", onsite: "现场核查 on-site verification", relayed: "报送市级 relayed to the city",
  pushed: "推送 pushed", offline: "测点离线 point offline", online: "测点恢复 point online",
  snapshot: "抓拍 snapshot", camera: "摄像机 camera", acknowledge: "核实 verified", handle: "处置 handled",
  feedback: "反馈 report", close: "关闭 closed", closed: "关闭 closed", comment: "备注 comment",
};
const DUTY = {
  safety_dept: "安全管理部门 safety dept", hq: "企业总部 HQ", industry_regulator: "行业监管部门 industry regulator",
  emergency_bureau: "应急管理局 emergency bureau", industry_dept: "行业主管部门 industry dept",
  monitoring_center: "市级监测中心 city monitoring centre", enterprise: "企业 enterprise",
};
const LIST_REFRESH_MS = 400; // a burst of events (escalation + notice) reloads once

export function warningId(w) { return w.warning_id || w.id; }

export function act(id, action, note = "", force = false) {
  return api(`/api/warnings/${id}/actions`, { method: "POST", body: JSON.stringify({ action, note, force }) });
}

function recipientsText(list, orgs) {
  if (!Array.isArray(list) || !list.length) return "";
  return list.map(r => {
    const org = orgs.get(r.org_id);
    return [DUTY[r.duty] || r.duty, org, r.name !== org ? r.name : ""].filter(Boolean).join(" ");
  }).join(" · ");
}

function pointName(w) { return w.sensor_name ?? w.name ?? ""; }

function describe(w) {
  const cause = CAUSES[w.cause] || w.cause || "";
  const value = w.value != null ? fmtValue(w.value, w.unit) : "";
  const th = w.threshold != null && w.cause !== "state" ? ` / ${fmtValue(w.threshold, w.unit)}` : "";
  return `${cause} ${value}${th}`.trim();
}

export class WarningsView {
  constructor(actions) {
    this.actions = actions;
    this.filter = { active: "", level: "", handling: "" };
    this.selected = null;
    this.refreshTimer = null;
    this.orgs = new Map(); // id → name, for the enterprise column and the recipients
    const select = (key, label, options) => h("select", { "aria-label": label, "data-filter": key,
      onchange: e => { this.filter[key] = e.target.value; this.refresh(); } },
    h("option", { value: "" }, "全部 all"), Object.entries(options).map(([k, v]) => h("option", { value: k }, v)));
    this.table = h("table", { id: "warnings" });
    this.error = h("p", { class: "error", role: "alert" });
    this.summary = h("p", { class: "summary", id: "warning-summary" });
    this.csv = h("a", { class: "button", download: "warnings.csv" }, "导出 CSV Export");
    this.detail = h("div", { id: "warning-detail", class: "warning-detail", hidden: true });
    this.el = h("div", { class: "warnings-view" },
      h("div", { class: "toolbar" },
        "状态 Status: ", select("active", "状态 status", { true: "进行中 active", false: "已解除 cleared" }),
        " 级别 Level: ", select("level", "级别 level", Object.fromEntries(LEVEL_ORDER.map(l => [l, LEVELS[l]]))),
        " 处置 Handling: ", select("handling", "处置 handling", HANDLING),
        h("button", { onclick: () => this.refresh() }, "刷新 Refresh"), this.csv),
      this.error,
      h("div", { class: "warnings-list" }, this.summary, this.table),
      this.detail);
  }

  async mount(root, openId) {
    root.replaceChildren(this.el);
    this.catalog = await loadCatalog().catch(() => null);
    if (this.catalog) this.orgs = new Map(this.catalog.orgs.map(o => [o.id, o.name]));
    await this.refresh();
    if (openId) await this.open(openId);
  }

  query() {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(this.filter)) if (v) q.set(k, v);
    return q;
  }

  async refresh() {
    const q = this.query();
    this.csv.href = withToken(`/api/warnings/export.csv?${q}`);
    q.set("limit", "200");
    let rows;
    try {
      rows = await api(`/api/warnings?${q}`);
      this.error.textContent = "";
    } catch (e) { this.error.textContent = e.message; return; }
    const head = h("tr", {}, ["级别 Level", "发生 Raised", "企业 Enterprise", "测点 Point", "原因 Cause", "状态 Status", "处置 Handling", "提醒 Notices"].map(t => h("th", {}, t)));
    this.table.replaceChildren(head, ...rows.map(w => this.row(w)));
    if (!rows.length) this.table.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "暂无预警 no warnings")));
    const count = f => rows.filter(f).length;
    this.summary.textContent = `共 total ${rows.length} · 进行中 active ${count(w => w.active)} · 待确认 new ${count(w => w.handling === "new")}` +
      LEVEL_ORDER.map(l => ` · ${LEVELS[l].split(" ")[0]} ${count(w => w.active && w.level === l)}`).join("");
  }

  row(w) {
    const id = warningId(w);
    return h("tr", { "data-warning": id, "data-level": w.level, "data-handling": w.handling, class: [w.active ? "active" : "", this.selected === id ? "selected" : ""].join(" ").trim(),
      onclick: () => this.open(id) },
    h("td", {}, levelChip(w.level), w.peak_level && w.peak_level !== w.level ? h("div", { class: "muted" }, "最高 peak ", LEVELS[w.peak_level] || w.peak_level) : ""),
    h("td", {}, fmtTime(w.raised_at)),
    h("td", {}, this.orgs.get(w.org_id) || ""),
    h("td", {}, h("strong", {}, w.tag || ""), " ", h("span", { class: "muted" }, pointName(w))),
    h("td", {}, describe(w)),
    h("td", { class: w.active ? "alarm-on" : "alarm-off" }, w.active ? "进行中 active" : "已解除 cleared",
      w.cleared_at ? h("div", { class: "muted" }, fmtTime(w.cleared_at)) : ""),
    h("td", { class: "handling" }, HANDLING[w.handling] || w.handling),
    h("td", {}, w.notice_count ?? ""));
  }

  // warning.* pushes: the list reloads (debounced) and the open warning's detail with it.
  onEvent(data, kind) {
    if (this.el.offsetParent === null) return; // not shown: mount() reloads it
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      this.refresh();
      if (this.selected && data && warningId(data) === this.selected) this.open(this.selected, true);
    }, LIST_REFRESH_MS);
    void kind;
  }

  async open(id, quiet = false) {
    let w;
    try { w = await api(`/api/warnings/${id}`); } catch (e) { if (!quiet) this.error.textContent = e.message; return; }
    this.selected = id;
    this.el.classList.add("with-detail");
    this.table.querySelectorAll("tr[data-warning]").forEach(tr => tr.classList.toggle("selected", tr.dataset.warning === id));
    const keepNote = this.note && this.note.value;
    this.note = h("textarea", { class: "note", maxlength: 2000, placeholder: "处置说明 / 反馈报告 note or handling report", "aria-label": "备注 note" });
    if (quiet && keepNote) this.note.value = keepNote;
    const force = h("input", { type: "checkbox", class: "force" });
    const button = (action, label, enabled) => h("button", { class: `small act-${action}`, disabled: !enabled,
      onclick: () => this.run(id, action, this.note.value, action === "close" && force.checked) }, label);
    const hs = w.handling;
    const actions = h("div", { class: "warning-actions" },
      button("acknowledge", "核实 Verify", hs === "new"),
      button("handle", "处置 Handle", hs === "acknowledged"),
      button("feedback", "反馈 Report", hs === "handled"),
      button("close", "关闭 Close", hs === "handled" && !!w.feedback),
      button("comment", "备注 Comment", true),
      w.active && hs !== "closed" ? h("label", { class: "muted", title: "条件仍成立时关闭 close while the condition holds" }, force, " 强制 force") : "");
    const history = (w.events || w.history || []).map(e => h("li", { "data-kind": e.kind, "data-level": e.level || "" },
      h("strong", {}, EVENT_KIND[e.kind] || e.kind), " ", e.level ? levelChip(e.level) : "", " ",
      h("span", { class: "muted" }, fmtTime(e.at)), e.user_id ? h("span", { class: "muted" }, ` · 用户 user #${e.user_id}`) : "",
      e.note ? h("div", { class: "note-text" }, e.note) : "",
      recipientsText(e.recipients, this.orgs) ? h("div", { class: "recipients" }, "→ ", recipientsText(e.recipients, this.orgs)) : ""));
    const bookmarks = w.bookmarks || [];
    const snaps = bookmarks.map(b => {
      const img = b.snapshot_url
        ? h("img", { class: "thumb", alt: "抓拍 snapshot", src: withToken(b.snapshot_url), title: "回放 replay at this time" })
        : h("span", { class: "thumb muted" }, "无图 no image");
      if (b.snapshot_url) img.addEventListener("error", () => img.replaceWith(h("span", { class: "muted" }, "无图 no image")));
      const camera = cameraKey(b.device_id, b.channel_id);
      return h("figure", { "data-camera": b.channel_id },
        h("a", { href: "#replay", onclick: ev => { ev.preventDefault(); this.actions.replay(camera, b.at); } }, img),
        h("figcaption", {}, cameraLabel(this.catalog, camera), " · ", fmtTime(b.at), " ",
          h("button", { class: "small bookmark", onclick: () => this.actions.replay(camera, b.at) }, "◀ 回放 Replay"),
          h("button", { class: "small", onclick: () => this.actions.live(camera) }, "▶ 实时 Live")));
    });
    this.actionError = h("p", { class: "error", role: "alert" });
    this.detail.hidden = false;
    this.detail.replaceChildren(...[
      h("div", { class: "detail-head" }, h("h3", {}, levelChip(w.level), " ", w.tag || "", " ", h("span", { class: "muted" }, pointName(w))),
        h("button", { class: "small", title: "关闭 Close", onclick: () => this.closeDetail() }, "✕")),
      h("dl", {},
        h("dt", {}, "企业 Enterprise"), h("dd", {}, this.orgs.get(w.org_id) || ""),
        h("dt", {}, "原因 Cause"), h("dd", {}, describe(w)),
        h("dt", {}, "发生 Raised"), h("dd", {}, fmtTime(w.raised_at)),
        h("dt", {}, "本级起 Level since"), h("dd", {}, fmtTime(w.level_since)),
        h("dt", {}, "状态 Status"), h("dd", {}, w.active ? "进行中 active" : `已解除 cleared ${fmtTime(w.cleared_at)}`),
        h("dt", {}, "处置 Handling"), h("dd", { class: "handling" }, HANDLING[hs] || hs),
        w.tracker ? [h("dt", {}, "跟踪 Tracked by"), h("dd", {}, DUTY[w.tracker] || w.tracker)] : "",
        w.next_notice_at ? [h("dt", {}, "下次提醒 Next notice"), h("dd", {}, fmtTime(w.next_notice_at))] : "",
        w.onsite_due_at ? [h("dt", {}, "现场核查 On-site due"), h("dd", {}, fmtTime(w.onsite_due_at))] : "",
        w.relayed_at ? [h("dt", {}, "报送市级 Relayed"), h("dd", {}, fmtTime(w.relayed_at))] : "",
        w.feedback ? [h("dt", {}, "反馈 Report"), h("dd", { class: "feedback" }, w.feedback)] : ""),
      hs !== "closed" ? [this.note, actions] : actions,
      this.actionError,
      snaps.length ? [h("h4", {}, "联动摄像机 Linked cameras"), h("div", { class: "snapshots" }, snaps)] : "",
      h("h4", {}, "经过 History"), h("ol", { class: "timeline" }, history)].flat());
  }

  closeDetail() {
    this.detail.hidden = true;
    this.selected = null;
    this.el.classList.remove("with-detail");
    this.table.querySelectorAll("tr.selected").forEach(tr => tr.classList.remove("selected"));
  }

  async run(id, action, note, force) {
    try {
      await act(id, action, note, force);
      this.note.value = "";
      this.actionError.textContent = "";
    } catch (e) { this.actionError.textContent = `${action}: ${e.message}`; return; }
    await Promise.all([this.refresh(), this.open(id, true)]);
  }
}

// A warning in the alarm panel beside video alarms: level, point, value and, once the
// linkage has taken it (a "warning.updated" with its URL, see warningSnapshot), the picture.
export function warningToast(push, w, kind, actions) {
  const id = warningId(w);
  push.container.querySelectorAll(`.warning-toast[data-warning="${id}"]`).forEach(el => el.remove());
  const close = () => el.remove();
  const refs = Array.isArray(w.camera_refs) && w.camera_refs.length ? w.camera_refs : null;
  const cams = refs ? refs.map(([d, c]) => cameraKey(d, c)) : w.cameras || [];
  const img = cams.length ? h("span", { class: "thumb muted snapshot-wait" }, "抓拍中… snapshot") : "";
  const verb = kind === "warning.escalated" ? "预警升级 escalated" : "新预警 warning";
  const el = h("div", { class: "toast warning-toast", role: "alert", "data-warning": id, "data-level": w.level },
    img,
    h("div", { class: "toast-body" },
      h("strong", {}, "⚠ ", verb, ": "), levelChip(w.level),
      h("div", {}, h("strong", {}, w.tag || ""), " ", pointName(w), " ", describe(w)),
      cams.length ? h("div", { class: "muted" }, cams.map(c => cameraLabel(cachedCatalog(), c)).join(" · ")) : "",
      h("div", { class: "muted" }, fmtTime(w.level_since || w.raised_at)),
      h("div", {},
        h("button", { class: "small", onclick: () => { actions.warning(id); close(); } }, "查看 Open"), " ",
        cams.length ? h("button", { class: "small", onclick: () => { actions.live(cams[0]); close(); } }, "▶ 实时 Live") : "", " ",
        h("button", { class: "small", onclick: close }, "✕"))));
  push.show(el);
  setTimeout(close, 60000);
}

// The linked camera's snapshot is stored: it takes the placeholder's place in the pop-up.
export function warningSnapshot(push, data) {
  if (!data.snapshot_url) return;
  const el = push.container.querySelector(`.warning-toast[data-warning="${warningId(data)}"]`);
  const slot = el && el.querySelector(".snapshot-wait, img.thumb");
  if (!slot || slot.tagName === "IMG") return; // the first camera's picture is enough
  const img = h("img", { class: "thumb", alt: "抓拍 snapshot", src: withToken(data.snapshot_url), "data-camera": data.channel_id });
  img.addEventListener("click", () => window.open(img.src, "_blank"));
  slot.replaceWith(img);
}
