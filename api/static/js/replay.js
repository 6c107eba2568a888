// Replay: a camera's recorded ranges on a timeline, ours (HLS via hls.js) or the NVR's own
// (GB28181 Playback, watched over WebRTC); pause/resume, speed and seek work for both — in the
// browser for our recordings, as MANSRTSP commands to the device for the NVR's — and downloads.
import { api, fmtTime, h, withToken } from "./api.js";
import { typeName } from "./alarms.js";
import { cameraBody, cameraOptions, cameraPath, keyOf, loadCatalog, parseKey, withDevice } from "./catalog.js";
import { DownloadsPanel } from "./downloads.js";
import { LiveViewer } from "./webrtc.js";

const WINDOWS = [[1, "1 小时 1 h"], [6, "6 小时 6 h"], [24, "24 小时 24 h"], [72, "3 天 3 days"]];
const SOURCES = [["recorder", "本地录像 recorded here"], ["device", "设备录像 on the NVR"]];
const SPEEDS = [0.5, 1, 2, 4, 8];
const JUMP_S = 30;
const EXPORT_S = 60;
const DOWNLOAD_DEFAULT_S = 300;
const POLL_MS = 500;
const ALARM_LEAD_S = 5; // an alarm marker plays from a little before the alarm
const ALARM_LIMIT = 1000;

let hlsLoading = null;
function loadHls() {
  if (window.Hls) return Promise.resolve(window.Hls);
  hlsLoading ||= new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = "/static/vendor/hls.min.js";
    s.onload = () => resolve(window.Hls);
    s.onerror = () => reject(new Error("hls.js failed to load"));
    document.head.append(s);
  });
  return hlsLoading;
}

// Holes between consecutive recorded ranges that the server did not already name (the NVR's
// own recordings come with no gaps at all): every break in the bar shows as a gap.
function holes(ranges, known) {
  const out = [...known];
  const sorted = [...ranges].sort((a, b) => new Date(a.start) - new Date(b.start));
  for (let i = 1; i < sorted.length; i++) {
    const a = new Date(sorted[i - 1].end), b = new Date(sorted[i].start);
    if (b - a < 1000) continue;
    if (known.some(g => new Date(g.start) < b && new Date(g.end) > a)) continue;
    out.push({ start: sorted[i - 1].end, end: sorted[i].start, reason: "" });
  }
  return out;
}

function localInput(d) {
  const p = n => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export class ReplayView {
  constructor() {
    this.hls = null;
    this.channelId = "";
    this.source = "recorder";
    this.windowH = 6;
    this.end = new Date();
    this.playFrom = null;
    this.speed = 1;
    this.paused = false;
    this.device = null; // the NVR playback: { session, viewer, timer, state }
    this.cameraSel = h("select", { "aria-label": "摄像机 camera", onchange: () => { this.channelId = this.cameraSel.value; this.load(); } });
    this.sourceSel = h("select", { "aria-label": "来源 source", class: "replay-source", onchange: () => { this.source = this.sourceSel.value; this.load(); } },
      SOURCES.map(([v, t]) => h("option", { value: v }, t)));
    this.endInput = h("input", { type: "datetime-local", "aria-label": "结束 end", onchange: () => { this.end = new Date(this.endInput.value); this.load(); } });
    this.windowSel = h("select", { "aria-label": "时长 window", onchange: () => { this.windowH = Number(this.windowSel.value); this.load(); } },
      WINDOWS.map(([v, t]) => h("option", { value: v, selected: v === this.windowH }, t)));
    this.bar = h("div", { class: "timeline-bar", title: "点击播放 click to play", onclick: ev => this.clickBar(ev) });
    this.cursor = h("div", { class: "timeline-cursor", hidden: true });
    this.bar.append(this.cursor);
    this.labels = h("div", { class: "timeline-labels" });
    this.legend = h("div", { class: "timeline-legend" },
      h("i", { style: "background:var(--ok)" }), "已录 recorded", h("i", { style: "background:var(--bad);opacity:.6" }), "缺口 gap",
      h("i", { class: "legend-schedule", style: "background:repeating-linear-gradient(45deg,var(--line) 0 3px,transparent 3px 6px)" }), "计划外 outside schedule",
      h("i", { style: "background:var(--bad);width:3px" }), "报警 alarm (点击回放 click to play)");
    this.loads = 0; // a newer load() drops what an older one still fetches
    this.info = h("p", { class: "muted" });
    this.clock = h("span", { class: "clock" });
    this.state = h("span", { class: "replay-state muted" });
    this.video = h("video", { controls: true, muted: true, playsinline: true, id: "replay-video" });
    this.exportLink = h("a", { class: "button", download: "", hidden: true }, `导出 ${EXPORT_S}s MP4 Export`);
    this.pauseBtn = h("button", { class: "replay-pause", onclick: () => this.togglePause() }, "暂停 Pause");
    this.speedBtns = SPEEDS.map(s => h("button", { class: "small replay-speed", "data-speed": s, onclick: () => this.setSpeed(s) }, `${s}×`));
    this.controls = h("div", { class: "toolbar replay-controls" }, this.pauseBtn,
      h("button", { class: "small replay-back", onclick: () => this.jump(-JUMP_S) }, `−${JUMP_S}s`),
      h("button", { class: "small replay-forward", onclick: () => this.jump(JUMP_S) }, `+${JUMP_S}s`),
      " 倍速 Speed: ", ...this.speedBtns, " ", this.state);
    this.downloads = new DownloadsPanel();
    this.video.addEventListener("timeupdate", () => { if (this.source === "recorder") this.tick(); });
    this.el = h("div", { class: "replay-view" },
      h("div", { class: "toolbar" }, "摄像机 Camera: ", this.cameraSel, " ", this.sourceSel, " 截止 Until: ", this.endInput, " ", this.windowSel,
        h("button", { onclick: () => { this.end = new Date(); this.load(); } }, "现在 Now")),
      h("div", { class: "timeline" }, this.bar, this.labels, this.legend), this.info,
      h("div", { class: "player" }, this.video, this.controls, h("div", {}, "播放时间 Playing: ", this.clock, " ", this.exportLink)),
      this.downloads.el);
    this.showSpeed();
  }

  get start() { return new Date(this.end.getTime() - this.windowH * 3600e3); }

  async mount(root, channelId, at) {
    root.replaceChildren(this.el);
    const catalog = await loadCatalog();
    if (channelId) this.channelId = keyOf(catalog, channelId); // a key "device/channel"
    if (at) {
      const t = new Date(at);
      this.end = new Date(t.getTime() + this.windowH * 3600e3 / 2);
      this.playFrom = new Date(t.getTime() - 30e3);
    }
    this.cameraSel.innerHTML = cameraOptions(catalog, this.channelId);
    this.downloads.refresh();
    await this.load();
  }

  async fetchRanges() {
    const q = new URLSearchParams({ start: this.start.toISOString(), end: this.end.toISOString() });
    if (this.source === "device") {  // what the NVR holds (RecordInfo)
      const r = await api(this.cameraUrl("device-records", q));
      const ranges = r.ranges;
      const seconds = ranges.reduce((s, x) => s + (new Date(x.end) - new Date(x.start)) / 1e3, 0);
      return { ranges, gaps: [], recorded_s: seconds };
    }
    return api(this.cameraUrl("timeline", q));
  }

  // /api/recordings/{channel}/{what}?{query}&device_id={device}: this camera's resource
  cameraUrl(what, query) {
    return withDevice(`/api/recordings/${cameraPath(this.channelId)}/${what}?${query}`, this.channelId);
  }

  async load() {
    this.stopPlayer();
    this.endInput.value = localInput(this.end);
    this.el.dataset.source = this.source;
    this.bar.dataset.start = this.start.toISOString();
    this.bar.dataset.end = this.end.toISOString();
    this.bar.querySelectorAll(".span, .alarm-mark").forEach(e => e.remove());
    const load = ++this.loads;
    this.labels.replaceChildren(h("span", {}, fmtTime(this.start.toISOString())), h("span", {}, fmtTime(this.end.toISOString())));
    if (!this.channelId) { this.info.textContent = "请选择摄像机 choose a camera"; return; }
    const defaultEnd = new Date(Math.min(this.end.getTime(), this.start.getTime() + DOWNLOAD_DEFAULT_S * 1e3));
    this.downloads.setContext(this.channelId, this.source, this.start, defaultEnd);
    let tl;
    try { tl = await this.fetchRanges(); }
    catch (e) { this.info.textContent = `录像查询失败 timeline failed: ${e.message}`; return; }
    if (load !== this.loads) return;
    const total = this.end - this.start;
    const place = (span, cls) => {
      const a = Math.max(new Date(span.start) - this.start, 0), b = Math.min(new Date(span.end) - this.start, total);
      if (b <= a) return;
      const what = cls === "recorded" ? "" : cls.includes("schedule") ? "计划外 outside schedule " : "缺口 gap ";
      this.bar.append(h("div", { class: `span ${cls}`, style: `left:${(a / total) * 100}%;width:${Math.max(((b - a) / total) * 100, 0.2)}%`,
        "data-start": span.start, "data-end": span.end,
        title: `${what}${fmtTime(span.start)} – ${fmtTime(span.end)}${span.reason ? " " + span.reason : ""}` }));
    };
    tl.ranges.forEach(r => place(r, "recorded"));
    const gaps = holes(tl.ranges, tl.gaps);
    gaps.forEach(g => place(g, g.reason === "schedule" ? "gap schedule" : "gap"));
    const faults = gaps.filter(g => g.reason !== "schedule");  // outside the schedule: not a fault
    this.ranges = tl.ranges;
    this.bar.dataset.ranges = tl.ranges.length;
    const where = this.source === "device" ? "设备录像 on the NVR" : "已录 recorded";
    this.info.textContent = `${where}: ${(tl.recorded_s / 60).toFixed(1)} 分钟 min · 片段 ranges: ${tl.ranges.length} · 缺口 gaps: ${faults.length}`;
    this.loadAlarms(load);
    const from = this.playFrom || (tl.ranges.length ? new Date(tl.ranges[0].start) : null);
    this.playFrom = null;
    if (from) await this.play(from);
  }

  // The camera's alarms raised in the window, as markers above the bar; a click plays from a
  // few seconds before the alarm.  The list is scoped by the server like the alarms page.
  async loadAlarms(load) {
    const { deviceId, channelId } = parseKey(this.channelId);
    const q = new URLSearchParams({ video_code: channelId, start: this.start.toISOString(), end: this.end.toISOString(), limit: ALARM_LIMIT });
    let alarms;
    try { alarms = await api(`/api/alarms?${q}`); } catch (_) { return; } // markers are a help, not a must
    if (load !== this.loads) return;
    alarms = alarms.filter(a => !deviceId || !a.device_id || a.device_id === deviceId); // same channel ID on another NVR
    const total = this.end - this.start;
    for (const a of alarms) {
      const at = new Date(a.raised_at);
      const frac = (at - this.start) / total;
      if (frac < 0 || frac > 1) continue;
      this.bar.append(h("button", {
        class: `alarm-mark${a.active ? " active" : ""}`, type: "button", style: `left:${frac * 100}%`,
        "data-alarm": a.alarm_id, "data-at": a.raised_at, "aria-label": `报警 alarm ${typeName(a)} ${fmtTime(a.raised_at)}`,
        title: `报警 ${typeName(a)} ${fmtTime(a.raised_at)}${a.active ? " 报警中 active" : ""} — 点击回放 click to play`,
        onclick: ev => { ev.stopPropagation(); this.seek(new Date(at.getTime() - ALARM_LEAD_S * 1e3)); },
      }));
    }
    this.bar.dataset.alarms = alarms.length;
    this.info.textContent += ` · 报警 alarms: ${alarms.length}`;
  }

  clickBar(ev) {
    const rect = this.bar.getBoundingClientRect();
    const frac = Math.min(Math.max((ev.clientX - rect.left) / rect.width, 0), 1);
    this.seek(new Date(this.start.getTime() + frac * (this.end - this.start)));
  }

  // A time in a gap plays the next recorded range rather than failing.
  recordedFrom(at) {
    const next = (this.ranges || []).find(r => new Date(r.end) > at);
    if (!next) return null;
    return new Date(next.start) > at ? new Date(next.start) : at;
  }

  async seek(at) {
    const target = this.recordedFrom(at);
    if (!target) { this.info.textContent = "此时间之后无录像 no recording after this time"; return; }
    const s = this.device && this.device.session;
    if (s && target >= new Date(s.start) && target < new Date(s.end)) {
      await this.control({ action: "seek", at: target.toISOString() });  // MANSRTSP Range: npt=
      return;
    }
    await this.play(target);
  }

  jump(seconds) {
    const now = this.playingDate();
    if (now) this.seek(new Date(now.getTime() + seconds * 1e3));
  }

  async play(at) {
    this.stopPlayer();
    this.playingStart = at;
    this.paused = false;
    this.showPause();
    if (this.source === "device") { await this.playDevice(at); return; }
    const q = new URLSearchParams({ start: at.toISOString(), end: this.end.toISOString() });
    const url = withToken(this.cameraUrl("playlist.m3u8", q));
    const exportQ = new URLSearchParams({ start: at.toISOString(), end: new Date(at.getTime() + EXPORT_S * 1e3).toISOString() });
    this.exportLink.href = withToken(this.cameraUrl("export.mp4", exportQ));
    this.exportLink.hidden = false;
    const Hls = await loadHls().catch(() => null);
    if (Hls && Hls.isSupported()) {
      this.hls = new Hls({ enableWorker: false, startPosition: -1 });
      this.hls.on(Hls.Events.ERROR, (_, data) => {
        if (data.fatal) this.info.textContent = `回放错误 replay error: ${data.details}${data.response ? " " + data.response.code : ""}`;
      });
      this.hls.loadSource(url);
      this.hls.attachMedia(this.video);
    } else if (this.video.canPlayType("application/vnd.apple.mpegurl")) {
      this.video.src = url;
    } else {
      this.info.textContent = "浏览器不支持 HLS this browser cannot play HLS";
      return;
    }
    this.video.defaultPlaybackRate = this.video.playbackRate = this.speed;
    this.video.play().catch(() => {});
  }

  // The NVR plays from `at` to the window's end; its video comes over WebRTC.
  async playDevice(at) {
    this.exportLink.hidden = true;
    const device = { session: null, viewer: null, timer: null, state: null };
    this.device = device;
    try {
      device.session = await api("/api/playback/sessions", {
        method: "POST", body: JSON.stringify({ ...cameraBody(this.channelId), start: at.toISOString(), end: this.end.toISOString() }),
      });
    } catch (e) {
      this.info.textContent = `设备回放失败 NVR playback failed: ${e.message}`;
      return;
    }
    if (this.device !== device) { this.closeDevice(device); return; }
    device.state = device.session;
    this.el.dataset.playback = device.session.id;
    device.viewer = new LiveViewer(this.channelId, this.video, () => {}, `/api/playback/sessions/${device.session.id}/offer`);
    device.viewer.open().catch(e => { this.info.textContent = `设备回放失败 NVR playback failed: ${e.message}`; });
    device.timer = setInterval(() => this.poll(device), POLL_MS);
    if (this.speed !== 1) this.whenPlaying(device, () => this.control({ action: "speed", speed: this.speed }));
  }

  whenPlaying(device, fn) {
    const wait = setInterval(() => {
      if (this.device !== device) { clearInterval(wait); return; }
      if (device.state && device.state.state === "playing") { clearInterval(wait); fn(); }
    }, POLL_MS);
  }

  async poll(device) {
    try { device.state = await api(`/api/playback/sessions/${device.session.id}`); }
    catch (_) { return; }
    if (this.device !== device) return;
    const s = device.state;
    this.state.textContent = `设备 NVR: ${s.state}${s.end_reason ? " · " + s.end_reason : ""}${s.error ? " · " + s.error : ""}`;
    this.tick();
  }

  async control(body) {
    const device = this.device;
    if (!device || !device.session) return;
    try {
      device.state = await api(`/api/playback/sessions/${device.session.id}/control`, { method: "POST", body: JSON.stringify(body) });
      this.paused = device.state.paused;
      this.showPause();
      this.tick();
    } catch (e) {
      this.info.textContent = `控制失败 control failed: ${e.message}`;
    }
  }

  togglePause() {
    if (this.source === "device") { this.control({ action: this.paused ? "resume" : "pause" }); return; }
    if (this.video.paused) { this.video.play().catch(() => {}); this.paused = false; }
    else { this.video.pause(); this.paused = true; }
    this.showPause();
  }

  setSpeed(speed) {
    this.speed = speed;
    this.showSpeed();
    if (this.source === "device") this.control({ action: "speed", speed });
    else this.video.defaultPlaybackRate = this.video.playbackRate = speed;
  }

  showPause() {
    this.pauseBtn.textContent = this.paused ? "继续 Resume" : "暂停 Pause";
    this.pauseBtn.dataset.paused = this.paused ? "1" : "0";
  }

  showSpeed() {
    this.speedBtns.forEach(b => b.classList.toggle("active", Number(b.dataset.speed) === this.speed));
  }

  playingDate() {
    if (this.source === "device") return this.device && this.device.state ? new Date(this.device.state.position) : null;
    if (this.hls && this.hls.playingDate) return this.hls.playingDate;
    return this.playingStart ? new Date(this.playingStart.getTime() + this.video.currentTime * 1e3) : null;
  }

  tick() {
    const d = this.playingDate();
    if (!d) return;
    this.clock.textContent = fmtTime(d.toISOString());
    const frac = (d - this.start) / (this.end - this.start);
    this.cursor.hidden = frac < 0 || frac > 1;
    this.cursor.style.left = `${frac * 100}%`;
  }

  closeDevice(device) {
    clearInterval(device.timer);
    if (device.viewer) device.viewer.close();
    if (device.session) api(`/api/playback/sessions/${device.session.id}`, { method: "DELETE" }).catch(() => {});
  }

  stopPlayer() {
    if (this.hls) { this.hls.destroy(); this.hls = null; }
    if (this.device) { this.closeDevice(this.device); this.device = null; delete this.el.dataset.playback; }
    this.state.textContent = "";
    this.video.srcObject = null;
    this.video.removeAttribute("src");
    this.video.load();
  }

  unmount() { this.stopPlayer(); this.downloads.stop(); }
}
