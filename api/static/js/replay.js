// Replay: a camera's recorded ranges on a timeline; click to play from that second (HLS via hls.js).
import { api, fmtTime, h, withToken } from "./api.js";
import { cameraOptions, loadCatalog } from "./catalog.js";

const WINDOWS = [[1, "1 小时 1 h"], [6, "6 小时 6 h"], [24, "24 小时 24 h"], [72, "3 天 3 days"]];
const EXPORT_S = 60;

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

function localInput(d) {
  const p = n => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export class ReplayView {
  constructor() {
    this.hls = null;
    this.channelId = "";
    this.windowH = 6;
    this.end = new Date();
    this.playFrom = null;
    this.cameraSel = h("select", { "aria-label": "摄像机 camera", onchange: () => { this.channelId = this.cameraSel.value; this.load(); } });
    this.endInput = h("input", { type: "datetime-local", "aria-label": "结束 end", onchange: () => { this.end = new Date(this.endInput.value); this.load(); } });
    this.windowSel = h("select", { "aria-label": "时长 window", onchange: () => { this.windowH = Number(this.windowSel.value); this.load(); } },
      WINDOWS.map(([v, t]) => h("option", { value: v, selected: v === this.windowH }, t)));
    this.bar = h("div", { class: "timeline-bar", title: "点击播放 click to play", onclick: ev => this.clickBar(ev) });
    this.cursor = h("div", { class: "timeline-cursor", hidden: true });
    this.bar.append(this.cursor);
    this.labels = h("div", { class: "timeline-labels" });
    this.info = h("p", { class: "muted" });
    this.clock = h("span", { class: "clock" });
    this.video = h("video", { controls: true, muted: true, playsinline: true, id: "replay-video" });
    this.exportLink = h("a", { class: "button", download: "", hidden: true }, `导出 ${EXPORT_S}s MP4 Export`);
    this.video.addEventListener("timeupdate", () => this.tick());
    this.el = h("div", { class: "replay-view" },
      h("div", { class: "toolbar" }, "摄像机 Camera: ", this.cameraSel, " 截止 Until: ", this.endInput, " ", this.windowSel,
        h("button", { onclick: () => { this.end = new Date(); this.load(); } }, "现在 Now")),
      h("div", { class: "timeline" }, this.bar, this.labels), this.info,
      h("div", { class: "player" }, this.video, h("div", {}, "播放时间 Playing: ", this.clock, " ", this.exportLink)));
  }

  get start() { return new Date(this.end.getTime() - this.windowH * 3600e3); }

  async mount(root, channelId, at) {
    root.replaceChildren(this.el);
    const catalog = await loadCatalog();
    if (channelId) this.channelId = channelId;
    if (at) {
      const t = new Date(at);
      this.end = new Date(t.getTime() + this.windowH * 3600e3 / 2);
      this.playFrom = new Date(t.getTime() - 30e3);
    }
    this.cameraSel.innerHTML = cameraOptions(catalog, this.channelId);
    await this.load();
  }

  async load() {
    this.endInput.value = localInput(this.end);
    this.bar.dataset.start = this.start.toISOString();
    this.bar.dataset.end = this.end.toISOString();
    this.bar.querySelectorAll(".span").forEach(e => e.remove());
    this.labels.replaceChildren(h("span", {}, fmtTime(this.start.toISOString())), h("span", {}, fmtTime(this.end.toISOString())));
    if (!this.channelId) { this.info.textContent = "请选择摄像机 choose a camera"; return; }
    const q = new URLSearchParams({ start: this.start.toISOString(), end: this.end.toISOString() });
    let tl;
    try { tl = await api(`/api/recordings/${this.channelId}/timeline?${q}`); }
    catch (e) { this.info.textContent = `录像查询失败 timeline failed: ${e.message}`; return; }
    const total = this.end - this.start;
    const place = (span, cls) => {
      const a = Math.max(new Date(span.start) - this.start, 0), b = Math.min(new Date(span.end) - this.start, total);
      if (b <= a) return;
      this.bar.append(h("div", { class: `span ${cls}`, style: `left:${(a / total) * 100}%;width:${Math.max(((b - a) / total) * 100, 0.2)}%`,
        title: `${fmtTime(span.start)} – ${fmtTime(span.end)}${span.reason ? " " + span.reason : ""}` }));
    };
    tl.ranges.forEach(r => place(r, "recorded"));
    const faults = tl.gaps.filter(g => g.reason !== "schedule");  // outside the schedule: plain "not recorded"
    faults.forEach(g => place(g, "gap"));
    this.ranges = tl.ranges;
    this.bar.dataset.ranges = tl.ranges.length;
    this.info.textContent = `已录 recorded: ${(tl.recorded_s / 60).toFixed(1)} 分钟 min · 片段 ranges: ${tl.ranges.length} · 缺口 gaps: ${faults.length}`;
    const from = this.playFrom || (tl.ranges.length ? new Date(tl.ranges[0].start) : null);
    this.playFrom = null;
    if (from) await this.play(from);
  }

  clickBar(ev) {
    const rect = this.bar.getBoundingClientRect();
    const frac = Math.min(Math.max((ev.clientX - rect.left) / rect.width, 0), 1);
    let at = new Date(this.start.getTime() + frac * (this.end - this.start));
    // A click in a gap plays the next recorded range rather than failing.
    const next = (this.ranges || []).find(r => new Date(r.end) > at);
    if (!next) { this.info.textContent = "此时间之后无录像 no recording after this time"; return; }
    if (new Date(next.start) > at) at = new Date(next.start);
    this.play(at);
  }

  async play(at) {
    this.playingStart = at;
    const q = new URLSearchParams({ start: at.toISOString(), end: this.end.toISOString() });
    const url = withToken(`/api/recordings/${this.channelId}/playlist.m3u8?${q}`);
    const exportQ = new URLSearchParams({ start: at.toISOString(), end: new Date(at.getTime() + EXPORT_S * 1e3).toISOString() });
    this.exportLink.href = withToken(`/api/recordings/${this.channelId}/export.mp4?${exportQ}`);
    this.exportLink.hidden = false;
    this.stopPlayer();
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
    this.video.play().catch(() => {});
  }

  playingDate() {
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

  stopPlayer() {
    if (this.hls) { this.hls.destroy(); this.hls = null; }
    this.video.removeAttribute("src");
    this.video.load();
  }

  unmount() { this.stopPlayer(); }
}
