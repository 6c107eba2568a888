// Setup: per-camera analysis (rules on/off, thresholds, schedules, zones and lines drawn on the
// camera's picture), saved through PUT /api/analyzers/channels/{id}, whose 422s are shown here.
import { ApiError, api, h, session } from "./api.js";
import { cameraPath, loadCatalog, parseKey, withDevice } from "./catalog.js";
import { ZoneEditor } from "./zones.js";

const PROFILE = { enterprise: "企业 Enterprise", gas_station: "加油站 Gas station" };
const RULES = {
  fire: "明火 Open flame", smoke: "烟雾 Smoke", no_helmet: "未戴安全帽 No helmet", phone: "打电话 Phone call",
  smoking: "抽烟 Smoking", no_workwear: "未穿工作服 No work clothes", intrusion: "区域入侵 Area intrusion",
  climbing_fence: "翻越围栏 Climbing a fence", gathering: "人员聚集 Gathering", off_duty: "人员离岗 Off post",
  sleeping: "睡岗 Sleeping on post", extinguisher_missing: "灭火器缺失 Extinguisher missing",
  static_discharge: "静电释放不足 Static discharge too short",
};
// Which crossings of a fence line count, seen facing along the line from its first point A.
const DIRECTIONS = [["both", "双向 both ways"], ["left_to_right", "左→右 left to right"], ["right_to_left", "右→左 right to left"]];
const PRESENCE = ["fire", "smoke", "no_helmet", "phone", "smoking", "no_workwear"];
const DAYS = ["一 Mo", "二 Tu", "三 We", "四 Th", "五 Fr", "六 Sa", "日 Su"]; // Monday = 0
// A field of a rule: [key, label, kind, default]; kind number | int | zone | line | mode | direction.
const COMMON = [
  ["min_score", "最低置信度 min score", "number", 0.4],
  ["confirm_s", "确认时长 confirm (s)", "number", null],
  ["clear_s", "消警时长 clear (s)", "number", 5],
  ["cooldown_s", "冷却 cooldown (s)", "number", 30],
];
const EXTRA = {
  presence: [["k", "命中帧 k", "int", 3], ["n", "窗口帧 n", "int", 5]],
  intrusion: [["min_count", "最少人数 min people", "int", 1]],
  climbing_fence: [["line", "围栏线 fence line", "line", null], ["direction", "越线方向 direction", "direction", "both"]],
  gathering: [["min_people", "最少人数 min people", "int", 5]],
  off_duty: [["min_people", "最少在岗 min on post", "int", 1]],
  sleeping: [["motion_px", "静止阈值 stillness", "number", 0.01]],
  extinguisher_missing: [["mode", "方式 mode", "mode", "reference"], ["ssim_min", "相似度下限 SSIM min", "number", 0.55]],
  static_discharge: [
    ["discharge_zone", "静电释放区 discharge post", "zone", null], ["unloading_zone", "卸油区 unloading point", "zone", null],
    ["required_s", "释放时长 required (s)", "number", 900], ["reset_s", "复位 reset (s)", "number", 600],
  ],
};
// Rules whose default confirm time differs (analyzers/config.py).
const CONFIRM = { intrusion: 1, climbing_fence: 0, gathering: 30, off_duty: 60, sleeping: 120, extinguisher_missing: 30, static_discharge: 5 };

function extraFields(type) { return PRESENCE.includes(type) ? EXTRA.presence : EXTRA[type] || []; }

// The rule types a camera of this profile may run: those with a code, and sleeping under off duty.
export function ruleTypes(codes) {
  const types = Object.keys(RULES).filter(t => t in codes);
  if ("off_duty" in codes) types.push("sleeping");
  return types;
}

// A 422 answer as lines a person can act on: {detail, errors: [{field, error}]} as the app
// answers (field "body.rules.0.gathering.min_people"), or FastAPI's own [{loc, msg}].
export function errorList(body) {
  if (!body) return [];
  if (Array.isArray(body.detail)) return body.detail.map(d => ({ path: (d.loc || []).map(String), error: d.msg }));
  return (body.errors || []).map(e => ({ path: String(e.field || "").split("."), error: e.error }));
}

export function describeErrors(body) {
  if (!body) return ["保存失败 save failed"];
  const lines = errorList(body).map(({ path, error }) => {
    const where = path.filter(p => p !== "body").join(" › ");
    return where ? `${where}: ${error}` : error;
  });
  return [`配置无效 ${typeof body.detail === "string" ? body.detail : "invalid config"}`, ...lines];
}

export class SetupView {
  constructor(actions) {
    this.actions = actions;
    this.catalog = null;
    this.key = "";
    this.state = null; // {profile, codes, config, running}
    this.list = h("table", { id: "setup-cameras" });
    this.form = h("div", { class: "setup-form", id: "setup-form" });
    this.error = h("p", { class: "error", role: "alert" });
    this.el = h("div", { class: "setup-view" },
      h("div", { class: "setup-list" }, h("h3", {}, "摄像机 Cameras"), this.error, this.list),
      this.form);
    this.zones = new ZoneEditor({
      onChange: () => this.renderRules(),
      onRename: (kind, from, to) => this.renameRefs(kind, from, to),
    });
  }

  async mount(root, key) {
    // shown again (or twice at login): keep the camera and the edits in progress
    const again = this.el.parentNode === root && !!this.key;
    root.replaceChildren(this.el);
    this.catalog = await loadCatalog();
    this.renderList();
    if (again && (!key || key === this.key)) return;
    const first = key || this.key || this.order[0];
    if (first) await this.select(first);
    else this.form.replaceChildren(h("p", { class: "muted" }, "无可配置的摄像机 no cameras to set up"));
  }

  renderList() {
    const orgs = new Map(this.catalog.orgs.map(o => [o.id, o]));
    const head = h("tr", {}, ["摄像机 Camera", "单位 Site", "在线 Online"].map(t => h("th", {}, t)));
    const site = c => (orgs.get(c.device.org_id) || {}).name || "";
    const cameras = [...this.catalog.channels.values()].sort((a, b) =>
      site(a).localeCompare(site(b), "zh") || (a.name || a.channel_id).localeCompare(b.name || b.channel_id, "zh") || a.key.localeCompare(b.key));
    this.order = cameras.map(c => c.key);
    const rows = cameras.map(c => {
      const org = orgs.get(c.device.org_id);
      return h("tr", { "data-camera": c.key, class: c.key === this.key ? "selected" : "", onclick: () => { if (c.key !== this.key) this.select(c.key); } },
        h("td", {}, h("span", { "data-i18n": "off" }, c.name || c.channel_id), h("div", { class: "muted" }, c.channel_id)),
        h("td", { "data-i18n": "off" }, org ? org.name : ""),
        h("td", { class: c.device.online ? "online" : "offline" }, c.device.online ? "● 在线 on" : "○ 离线 off"));
    });
    this.list.replaceChildren(head, ...rows);
    if (!rows.length) this.list.append(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "无 none")));
  }

  url(key, tail = "") { return withDevice(`/api/analyzers/channels/${cameraPath(key)}${tail}`, key); }

  async select(key) {
    this.key = key;
    for (const tr of this.list.querySelectorAll("tr[data-camera]")) tr.classList.toggle("selected", tr.dataset.camera === key);
    this.error.textContent = "";
    let got;
    try { got = await api(this.url(key)); } catch (e) { this.error.textContent = e.message; return; }
    if (this.key !== key) return; // another camera was chosen meanwhile
    this.state = { profile: got.profile, codes: got.codes, config: structuredClone(got.config || {}), running: got.running };
    const channel = this.catalog.channels.get(key);
    this.record = structuredClone((channel && channel.record_schedule) || []); // edits kept across a re-render
    this.renderForm();
    this.loadPicture();
  }

  loadPicture() {
    const key = this.key;
    this.zones.setPicture(null, "正在获取画面… fetching the picture…");
    // fetched (not an <img src>) so a 503's reason can be shown in place of the picture
    fetch(this.url(key, "/snapshot.jpg"), { headers: { Authorization: "Bearer " + session.token }, cache: "no-store" })
      .then(async r => {
        if (this.key !== key) return; // another camera was chosen meanwhile
        if (!r.ok) {
          const body = await r.json().catch(() => ({}));
          this.zones.setPicture(null, `无画面 no picture (${r.status}): ${body.detail || r.statusText}`);
          return;
        }
        const blob = await r.blob();
        if (this.key !== key) return;
        if (this.pictureUrl) URL.revokeObjectURL(this.pictureUrl);
        this.pictureUrl = URL.createObjectURL(blob);
        this.zones.setPicture(this.pictureUrl, "");
      })
      .catch(e => this.zones.setPicture(null, `无画面 no picture: ${e.message}`));
  }

  renderForm() {
    const cfg = this.state.config, c = this.catalog.channels.get(this.key);
    const sample = cfg.sample || {};
    this.enabled = h("input", { type: "checkbox", class: "setup-enabled", checked: !!cfg.enabled });
    this.inputSize = h("select", { class: "setup-input-size" },
      [640, 320].map(v => h("option", { value: v, selected: (cfg.input_size || 640) === v }, `${v} px`)));
    this.sampleMode = h("select", { class: "setup-sample-mode" },
      h("option", { value: "keyframes", selected: sample.mode !== "fps" }, "关键帧 keyframes"),
      h("option", { value: "fps", selected: sample.mode === "fps" }, "固定帧率 fixed fps"));
    this.sampleFps = h("input", { type: "number", class: "setup-sample-fps", min: 0.1, max: 30, step: 0.1, value: sample.fps ?? 1 });
    this.motion = h("input", { type: "checkbox", class: "setup-motion", checked: !!(cfg.motion_gate || {}).enabled });
    this.schedules = structuredClone(cfg.schedules || {});
    this.rulesBox = h("div", { class: "setup-rules" });
    this.scheduleBox = h("div", { class: "setup-schedules" });
    this.recordBox = h("fieldset", { class: "record-schedule" });
    this.saveErrors = h("ul", { class: "error setup-errors", role: "alert" });
    this.saveState = h("span", { class: "muted setup-saved" });
    this.zones.load(cfg.zones || {}, cfg.lines || {});
    this.rules = structuredClone(cfg.rules || []);
    this.stored = new Set(this.rules); // rules saved before: kept even while switched off
    this.form.replaceChildren(
      h("h3", {}, h("span", { "data-i18n": "off" }, c ? c.name || c.channel_id : this.key), " ",
        h("span", { class: "kind setup-profile", "data-profile": this.state.profile, title: "由所属单位类型决定 set by the site's kind" },
          PROFILE[this.state.profile] || this.state.profile),
        " ", h("span", { class: this.state.running ? "online" : "muted" }, this.state.running ? "分析中 running" : "未运行 not running")),
      h("div", { class: "toolbar" },
        h("label", {}, this.enabled, " 启用分析 Analysis on"),
        h("label", {}, "输入尺寸 Input ", this.inputSize),
        h("label", {}, "采样 Sampling ", this.sampleMode, " ", this.sampleFps, " fps"),
        h("label", {}, this.motion, " 运动门限 Motion gate")),
      h("h4", {}, "区域与线 Zones and lines ",
        h("button", { type: "button", class: "small zone-refresh", onclick: () => this.loadPicture() }, "刷新画面 Refresh picture")),
      this.zones.el,
      h("h4", {}, "时间表 Schedules ",
        h("button", { type: "button", class: "small schedule-add", onclick: () => this.addSchedule() }, "添加 Add")),
      this.scheduleBox,
      h("h4", {}, "分析规则 Rules"),
      this.rulesBox,
      this.saveErrors,
      h("div", { class: "toolbar setup-actions" },
        h("button", { type: "button", class: "setup-save active", onclick: () => this.save() }, "保存 Save"),
        h("button", { type: "button", class: "setup-reload", onclick: () => this.select(this.key) }, "撤销 Revert"),
        this.saveState),
      this.recordBox);
    this.renderRecord();
    this.renderSchedules();
    this.renderRules();
    requestAnimationFrame(() => this.zones.draw());
  }

  // --- recording schedule: the channel's weekly windows (PATCH of the channel) -----------

  renderRecord(answer = null, status = "") {
    const c = this.catalog.channels.get(this.key);
    const bad = new Set(errorList(answer).map(({ path }) => {
      const i = path.indexOf("record_schedule");
      return i >= 0 ? Number(path[i + 1]) : NaN;
    }));
    const rows = this.record.map((w, wi) => {
      const clock = (field, label) => {
        const input = h("input", { class: `record-${field}`, value: w[field] || "", size: 6, placeholder: "HH:MM", "aria-label": label });
        input.addEventListener("change", () => { w[field] = input.value.trim(); });
        return input;
      };
      const days = DAYS.map((label, d) => { // ISO weekdays: Monday = 1
        const box = h("input", { type: "checkbox", class: "record-day", value: d + 1, checked: (w.days || []).includes(d + 1) });
        box.addEventListener("change", () => {
          const set = new Set(w.days || []);
          box.checked ? set.add(d + 1) : set.delete(d + 1);
          w.days = [...set].sort((a, b) => a - b);
        });
        return h("label", { class: "day" }, box, label);
      });
      return h("div", { class: "record-window" + (bad.has(wi) ? " invalid" : ""), "data-window": wi },
        days, " ", clock("start", "开始 start"), " — ", clock("end", "结束 end"), " ",
        h("button", { type: "button", class: "small record-remove", onclick: () => { this.record.splice(wi, 1); this.renderRecord(); } }, "✕"));
    });
    const errors = h("ul", { class: "error record-errors", role: "alert" },
      answer ? describeErrors(answer).map(t => h("li", {}, t)) : []);
    this.recordBox.replaceChildren(
      h("legend", {}, "录像计划 Recording schedule"),
      c && c.record_enabled === false ? h("p", { class: "muted" }, "此摄像机未启用录像 recording is off for this camera") : "",
      h("p", { class: "muted record-state" }, this.record.length
        ? `${this.record.length} 个时段 windows (本机时间 node's local time; 结束不晚于开始 = 跨午夜 end not after start = over midnight)`
        : "全天录像 always (empty: around the clock)"),
      ...rows, errors,
      h("div", { class: "toolbar" },
        h("button", { type: "button", class: "small record-add", onclick: () => {
          this.record.push({ days: [1, 2, 3, 4, 5], start: "08:00", end: "18:00" });
          this.renderRecord();
        } }, "+ 时段 Add window"),
        h("button", { type: "button", class: "small record-clear", disabled: !this.record.length, onclick: () => { this.record = []; this.renderRecord(); } }, "全天 Always"),
        h("button", { type: "button", class: "record-save", onclick: () => this.saveRecord() }, "保存录像计划 Save schedule"),
        h("span", { class: "muted record-saved" }, status)));
  }

  async saveRecord() {
    const key = this.key, c = this.catalog.channels.get(key);
    const { deviceId, channelId } = parseKey(key);
    const device = deviceId || (c && c.device.device_id);
    const path = `/api/devices/${encodeURIComponent(device)}/channels/${encodeURIComponent(channelId)}`;
    const resp = await fetch(path, {
      method: "PATCH",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + session.token },
      body: JSON.stringify({ record_schedule: this.record }),
    }).catch(e => ({ ok: false, status: 0, json: async () => ({ detail: e.message }) }));
    if (this.key !== key) return;
    if (resp.ok) {
      const got = await resp.json();
      if (c) c.record_schedule = got.record_schedule; // the catalog shared by the views
      this.record = structuredClone(got.record_schedule || []);
      this.renderRecord(null, "已保存 saved");
      return;
    }
    if (resp.status === 401) throw new ApiError(401, "登录已过期 session expired");
    const answer = await resp.json().catch(() => null) || { detail: `HTTP ${resp.status}` };
    this.renderRecord(answer, `未保存 not saved (${resp.status})`);
  }

  // --- schedules: named lists of daily windows -------------------------------------------

  addSchedule() {
    let i = 1;
    while (`时段${i}` in this.schedules) i++;
    this.schedules[`时段${i}`] = [{ start: "08:00", end: "18:00", days: [0, 1, 2, 3, 4] }];
    this.renderSchedules();
    this.renderRules();
  }

  renderSchedules() {
    const blocks = Object.entries(this.schedules).map(([name, windows]) => {
      const nameInput = h("input", { class: "schedule-name", value: name, size: 10, "aria-label": "名称 name" });
      nameInput.addEventListener("change", () => {
        const to = nameInput.value.trim();
        if (!to || to in this.schedules) { nameInput.value = name; return; }
        this.schedules = Object.fromEntries(Object.entries(this.schedules).map(([k, v]) => [k === name ? to : k, v]));
        for (const r of this.rules) if (r.schedule === name) r.schedule = to;
        this.renderSchedules();
        this.renderRules();
      });
      const rows = windows.map((w, wi) => {
        const start = h("input", { type: "time", class: "window-start", value: w.start || "00:00" });
        const end = h("input", { type: "time", class: "window-end", value: w.end || "23:59" });
        start.addEventListener("change", () => { w.start = start.value; });
        end.addEventListener("change", () => { w.end = end.value; });
        const days = DAYS.map((label, d) => {
          const box = h("input", { type: "checkbox", checked: (w.days ?? [0, 1, 2, 3, 4, 5, 6]).includes(d) });
          box.addEventListener("change", () => {
            const set = new Set(w.days ?? [0, 1, 2, 3, 4, 5, 6]);
            box.checked ? set.add(d) : set.delete(d);
            w.days = [...set].sort();
          });
          return h("label", { class: "day" }, box, label);
        });
        return h("div", { class: "schedule-window" }, start, " — ", end, " ", days,
          h("button", { type: "button", class: "small", onclick: () => { windows.splice(wi, 1); this.renderSchedules(); } }, "✕"));
      });
      return h("div", { class: "schedule", "data-schedule": name }, nameInput, " ",
        h("button", { type: "button", class: "small", onclick: () => { windows.push({ start: "00:00", end: "23:59", days: [0, 1, 2, 3, 4, 5, 6] }); this.renderSchedules(); } }, "+ 时段 window"),
        h("button", { type: "button", class: "small", onclick: () => {
          delete this.schedules[name];
          for (const r of this.rules) if (r.schedule === name) delete r.schedule;
          this.renderSchedules(); this.renderRules();
        } }, "删除 Delete"),
        rows);
    });
    this.scheduleBox.replaceChildren(...blocks);
    if (!blocks.length) this.scheduleBox.append(h("p", { class: "muted" }, "无：规则全天运行 none: rules run at all times"));
  }

  // --- rules: one card per rule of the camera, and one per type it could still run ----------

  renameRefs(kind, from, to) {
    for (const r of this.rules) {
      if (kind === "zone") {
        r.zones = (r.zones || []).map(z => (z === from ? to : z));
        for (const k of ["discharge_zone", "unloading_zone"]) if (r[k] === from) r[k] = to;
      } else if (r.line === from) r.line = to;
    }
  }

  renderRules() {
    if (!this.state) return;
    const zones = this.zones.names("zone"), lines = this.zones.names("line");
    const cards = [];
    const present = new Set(this.rules.map(r => r.type));
    for (const rule of this.rules) cards.push(this.ruleCard(rule, zones, lines));
    for (const type of ruleTypes(this.state.codes)) {
      if (!present.has(type)) cards.push(this.ruleCard(null, zones, lines, type));
    }
    this.rulesBox.replaceChildren(...cards);
    this.showDirections();
  }

  // The fence rules' crossing senses, drawn on their lines in the editor.
  showDirections() {
    const dirs = {};
    for (const r of this.rules) if (r.type === "climbing_fence" && r.line && r.enabled !== false) dirs[r.line] = r.direction || "both";
    this.zones.setDirections(dirs);
  }

  ruleCard(rule, zones, lines, type = rule && rule.type) {
    const on = !!rule && rule.enabled !== false;
    const code = this.state.codes[type === "sleeping" ? "off_duty" : type];
    const ensure = () => { // an edit on a rule the camera does not run yet adds it, still off
      if (!rule) { rule = { type, enabled: false }; this.rules.push(rule); }
      return rule;
    };
    const toggle = h("input", { type: "checkbox", class: "rule-enabled", checked: on });
    toggle.addEventListener("change", () => {
      ensure().enabled = toggle.checked;
      if (!toggle.checked && Object.keys(rule).length <= 2) this.rules = this.rules.filter(r => r !== rule); // untouched: gone
      this.renderRules();
    });
    const fields = [...COMMON, ...extraFields(type)].map(([key, label, kind, dflt]) => {
      const value = rule && rule[key] != null ? rule[key] : key === "confirm_s" ? CONFIRM[type] ?? (PRESENCE.includes(type) ? 0 : 2) : dflt;
      let input;
      if (kind === "zone" || kind === "line" || kind === "mode" || kind === "direction") {
        const names = kind === "zone" ? zones : kind === "line" ? lines : [];
        const choices = kind === "mode" ? [["reference", "参考图 reference picture"], ["model", "模型 model"]]
          : kind === "direction" ? DIRECTIONS : names.map(n => [n, n]);
        input = h("select", { "data-field": key }, kind === "zone" || kind === "line" ? h("option", { value: "" }, "— 无 none —") : null,
          choices.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
        input.addEventListener("change", () => {
          if (input.value) ensure()[key] = input.value;
          else if (rule) delete rule[key];
          this.showDirections();
        });
      } else {
        input = h("input", { type: "number", "data-field": key, step: kind === "int" ? 1 : "any", value: value ?? "", size: 6 });
        input.addEventListener("change", () => {
          if (input.value === "") { if (rule) delete rule[key]; return; }
          ensure()[key] = kind === "int" ? parseInt(input.value, 10) : Number(input.value);
        });
      }
      return h("label", { class: "rule-field" }, label, " ", input);
    });
    const zoneBoxes = zones.map(z => {
      const box = h("input", { type: "checkbox", value: z, checked: !!rule && (rule.zones || []).includes(z) });
      box.addEventListener("change", () => {
        const r = ensure(), set = new Set(r.zones || []);
        box.checked ? set.add(z) : set.delete(z);
        r.zones = zones.filter(n => set.has(n));
      });
      return h("label", { class: "rule-zone" }, box, z);
    });
    const schedule = h("select", { "data-field": "schedule" }, h("option", { value: "" }, "全天 always"),
      Object.keys(this.schedules).map(n => h("option", { value: n, selected: !!rule && rule.schedule === n }, n)));
    schedule.addEventListener("change", () => {
      if (schedule.value) ensure().schedule = schedule.value;
      else if (rule) delete rule.schedule;
    });
    return h("fieldset", { class: "rule-card", "data-rule": type, "data-on": on ? "1" : "0" },
      h("legend", {}, h("label", {}, toggle, " ", RULES[type] || type),
        code ? h("span", { class: "muted" }, ` 代码 code ${code}${type === "sleeping" ? " (离岗 off duty)" : ""}`) : null),
      h("div", { class: "rule-fields" }, fields,
        h("label", { class: "rule-field" }, "时间表 schedule ", schedule)),
      zones.length ? h("div", { class: "rule-zones" }, "区域 zones: ", zoneBoxes, h("span", { class: "muted" }, " (不选 = 全画面 none = whole frame)")) : null);
  }

  // --- save ---------------------------------------------------------------------------------

  config() {
    const shapes = this.zones.value();
    const base = this.state.config;
    return {
      ...base,
      enabled: this.enabled.checked,
      input_size: Number(this.inputSize.value),
      sample: { ...(base.sample || {}), mode: this.sampleMode.value, fps: Number(this.sampleFps.value) || 1 },
      motion_gate: { ...(base.motion_gate || {}), enabled: this.motion.checked },
      zones: shapes.zones,
      lines: shapes.lines,
      schedules: this.schedules,
      // a rule only tried here and left off is not saved (its checks would refuse the rest)
      rules: this.rules.filter(r => r.enabled !== false || this.stored.has(r)),
    };
  }

  async save() {
    const body = this.config();
    this.sent = body;
    this.saveErrors.replaceChildren();
    this.saveState.textContent = "保存中… saving…";
    const resp = await fetch(this.url(this.key), {
      method: "PUT",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + session.token },
      body: JSON.stringify(body),
    }).catch(e => ({ ok: false, status: 0, json: async () => ({ detail: e.message }) }));
    if (resp.ok) {
      const got = await resp.json();
      this.state = { profile: got.profile, codes: got.codes, config: structuredClone(got.config), running: got.running };
      this.renderForm();
      this.saveState.textContent = "已保存 saved";
      return;
    }
    if (resp.status === 401) { this.saveState.textContent = ""; throw new ApiError(401, "登录已过期 session expired"); }
    const answer = await resp.json().catch(() => null);
    this.saveState.textContent = `未保存 not saved (${resp.status})`;
    this.saveErrors.replaceChildren(...describeErrors(answer).map(t => h("li", {}, t)));
    this.markInvalid(answer);
    this.saveErrors.scrollIntoView({ block: "nearest" });
  }

  // The rule cards an error names (body › rules › i › ...) get a red frame.
  markInvalid(answer) {
    const cards = this.rulesBox.querySelectorAll("fieldset.rule-card");
    for (const { path } of errorList(answer)) {
      const i = path.indexOf("rules"), n = Number(path[i + 1]);
      const sent = i >= 0 && Number.isInteger(n) ? this.sent.rules[n] : null;
      const card = sent ? cards[this.rules.indexOf(sent)] : null;
      if (card) card.classList.add("invalid");
    }
  }

  unmount() { this.zones.dispose(); }
}
