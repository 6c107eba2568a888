// Live wall: 1/4/9/16 tiles, each a WebRTC <video> of one camera; the layout survives reloads.
// A tile's camera is its key "device/channel" (catalog.js): two devices may list one channel ID.
import { api, h } from "./api.js";
import { cameraLabel, cameraOptions, cameraPath, keyOf, loadCatalog, withDevice } from "./catalog.js";
import { LEVELS } from "./levels.js";
import { LiveViewer } from "./webrtc.js";

export const LAYOUTS = [1, 4, 9, 16];
const RETRY_MIN_MS = 2000;
const RETRY_MAX_MS = 30000;
const STATS_EVERY_MS = 5000;

const STATE_LABEL = {
  new: "连接中 connecting", connecting: "连接中 connecting", connected: "等待画面 waiting for video",
  disconnected: "中断 interrupted", failed: "失败 failed", closed: "已关闭 closed",
};

class Tile {
  constructor(wall, index) {
    this.wall = wall;
    this.index = index;
    this.channelId = "";
    this.viewer = null;
    this.retryMs = RETRY_MIN_MS;
    this.retryTimer = null;
    this.video = h("video", { muted: true, autoplay: true, playsinline: true, "data-tile": index });
    this.video.muted = true;
    this.select = h("select", { "aria-label": `画面 ${index + 1} camera`, onchange: () => this.wall.assign(this.index, this.select.value) });
    this.status = h("span", { class: "tile-status" }, "空闲 idle");
    this.info = h("span", { class: "tile-info" });
    this.stream = "";
    this.pin = h("button", { class: "small pin", title: "固定 Pin: 联动不替换 linkage never replaces this tile",
      onclick: () => this.wall.togglePin(this.index) }, "⚑");
    this.levelBadge = h("span", { class: "tile-level", hidden: true });
    // tiles start muted (autoplay); the camera's G.711 audio plays once unmuted here
    this.sound = h("button", { class: "small sound", title: "声音 Sound",
      onclick: () => { this.video.muted = !this.video.muted; this.sound.textContent = this.video.muted ? "🔇" : "🔊"; } }, "🔇");
    this.video.addEventListener("resize", () => {
      this.showInfo();
      if (this.status.dataset.state === "connected") this.status.textContent = "实时 live";
    });
    this.el = h("div", { class: "tile", "data-index": index },
      h("div", { class: "tile-bar" }, this.select, this.levelBadge, this.status, this.info, this.sound, this.pin,
        h("button", { class: "small", title: "关闭 Close", onclick: () => this.wall.assign(this.index, "") }, "✕")),
      this.video);
    this.el.addEventListener("dblclick", () => this.el.classList.toggle("maximised"));
  }

  showInfo() {
    const size = this.video.videoWidth ? `${this.video.videoWidth}×${this.video.videoHeight}` : "";
    this.info.textContent = [size, this.stream].filter(Boolean).join(" · ");
  }

  // The hub's view of the camera (what arrives from the NVR): frame rate, bitrate, loss.
  async pollStream() {
    if (!this.channelId || document.hidden) return;
    try {
      const st = await api(withDevice(`/api/streams/${cameraPath(this.channelId)}`, this.channelId));
      const loss = st.loss_pct ? ` ${st.loss_pct}% loss` : "";
      this.stream = `${Math.round(st.fps)} fps ${Math.round(st.bitrate_bps / 1000)} kb/s${loss}`;
    } catch (_) { this.stream = ""; }
    this.showInfo();
  }

  flash() {
    this.el.classList.remove("flash");
    void this.el.offsetWidth; // restart the animation
    this.el.classList.add("flash");
  }

  refreshOptions(catalog) { this.select.innerHTML = cameraOptions(catalog, this.channelId); }

  // The sensor warning that brought this camera up: the tile shows its level until it ends.
  paintMark() {
    const mark = this.channelId ? this.wall.marks.get(this.channelId) : null;
    this.el.dataset.level = mark ? mark.level : "";
    this.levelBadge.hidden = !mark;
    this.levelBadge.textContent = mark ? `⚠ ${LEVELS[mark.level] || mark.level}` : "";
    this.levelBadge.dataset.level = mark ? mark.level : "";
    this.pin.classList.toggle("active", !!this.wall.pinned[this.index]);
  }

  setStatus(state) {
    this.status.textContent = STATE_LABEL[state] || state;
    this.status.dataset.state = state;
  }

  play(channelId) {
    this.stop();
    this.channelId = channelId;
    this.select.value = channelId;
    this.el.title = channelId ? cameraLabel(this.wall.catalog, channelId) : "";
    this.paintMark();
    if (!channelId) { this.setStatus("idle"); this.status.textContent = "空闲 idle"; return; }
    this.connect();
  }

  connect() {
    clearInterval(this.statsTimer);
    this.statsTimer = setInterval(() => this.pollStream(), STATS_EVERY_MS);
    setTimeout(() => this.pollStream(), 1500);
    const viewer = new LiveViewer(this.channelId, this.video, state => {
      if (viewer !== this.viewer) return;
      this.setStatus(state);
      if (state === "connected") this.retryMs = RETRY_MIN_MS;
      if (state === "failed" || state === "disconnected") this.retry();
    });
    this.viewer = viewer;
    this.setStatus("connecting");
    viewer.open().catch(err => {
      if (viewer !== this.viewer) return;
      this.status.textContent = `错误 error: ${err.message}`;
      this.status.dataset.state = "failed";
      if (![403, 404, 415, 429].includes(err.status)) this.retry(); // those will not heal by waiting
    });
  }

  retry() {
    if (this.retryTimer || !this.channelId) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.channelId) return;
      if (this.viewer) this.viewer.close();
      this.connect();
    }, wait);
  }

  stop() {
    clearInterval(this.statsTimer);
    this.stream = "";
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.viewer) { this.viewer.close(); this.viewer = null; }
    this.info.textContent = "";
  }
}

export class LiveWall {
  // storeKey is per user: one operator's wall is not another user's (who may not see its cameras).
  constructor(storeKey) {
    this.storeKey = storeKey;
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem(storeKey) || "{}"); } catch (_) { /* reset */ }
    this.layout = LAYOUTS.includes(saved.layout) ? saved.layout : 4;
    this.channels = Array.isArray(saved.channels) ? saved.channels.slice(0, 16) : [];
    this.pinned = Array.isArray(saved.pinned) ? saved.pinned.slice(0, 16) : [];
    this.openedAt = []; // when each tile got its camera: linkage replaces the oldest first
    this.marks = new Map(); // camera → {level, ref} of the sensor warning that opened it
    this.tiles = [];
    this.catalog = null;
    this.grid = h("div", { class: "wall", id: "wall" });
    this.layoutButtons = LAYOUTS.map(n => h("button", { "data-layout": n, onclick: () => this.setLayout(n) }, `${n} 画面`));
    this.autoPop = saved.autoPop !== false;
    const autoPop = h("input", { type: "checkbox", id: "auto-pop", checked: this.autoPop,
      onchange: e => { this.autoPop = e.target.checked; this.save(); } });
    this.el = h("div", { class: "live-view" },
      h("div", { class: "toolbar" }, h("span", {}, "分屏 Layout: "), this.layoutButtons,
        h("button", { onclick: () => this.clear() }, "全部关闭 Close all"),
        h("label", { title: "报警或预警时自动调出摄像机 show the cameras of an alarm or sensor warning" }, autoPop, " 报警/预警联动 auto-show on alarm or warning")),
      this.grid);
  }

  async mount(root) {
    root.replaceChildren(this.el);
    this.catalog = await loadCatalog();
    // a layout saved by an older version names cameras by channel ID alone
    this.channels = this.channels.map(c => (c ? keyOf(this.catalog, c) : c));
    this.render();
  }

  key(camera) { return keyOf(this.catalog, camera); }

  save() {
    localStorage.setItem(this.storeKey, JSON.stringify({ layout: this.layout, channels: this.channels, autoPop: this.autoPop, pinned: this.pinned }));
  }

  // An alarm's camera comes onto the wall (spec: call up the camera quickly on an alarm).
  alarmRaised(camera) { if (this.autoPop && this.tiles.length) this.show(camera, true); }

  // A sensor warning opened or escalated: its linked cameras come up (free tiles first, then
  // the oldest tiles not pinned) marked with the level.  Before the wall was first shown the
  // cameras go into the saved layout, so they play when it is.
  warningRaised(cameras, level, ref) {
    if (!this.autoPop || !cameras || !cameras.length) return [];
    const taken = new Set();
    const placed = [];
    for (const camera of cameras) {
      const channelId = this.key(camera);
      this.marks.set(channelId, { level, ref });
      let index = this.indexOf(channelId);
      if (index < 0) {
        index = this.freeSlot(taken);
        if (index < 0) continue; // every tile pinned or already used by this warning
        this.assign(index, channelId);
      }
      taken.add(index);
      placed.push(index);
      if (this.tiles[index]) { this.tiles[index].paintMark(); this.tiles[index].flash(); }
    }
    return placed;
  }

  // The warning's level changed (level) or it ended (level empty): update or drop its marks.
  warningChanged(ref, level = "") {
    for (const [channelId, mark] of [...this.marks]) {
      if (mark.ref !== ref) continue;
      if (level) mark.level = level;
      else this.marks.delete(channelId);
    }
    this.tiles.forEach(t => t.paintMark());
  }

  indexOf(channelId) {
    for (let i = 0; i < this.layout; i++) if ((this.channels[i] || "") === channelId) return i;
    return -1;
  }

  // A tile for an automatic call-up: a free one, else the one holding its camera longest, never
  // a pinned one; -1 when none may be taken.
  freeSlot(taken = new Set()) {
    let oldest = -1;
    for (let i = 0; i < this.layout; i++) {
      if (taken.has(i)) continue;
      if (!this.channels[i]) return i;
      if (this.pinned[i]) continue;
      if (oldest < 0 || (this.openedAt[i] || 0) < (this.openedAt[oldest] || 0)) oldest = i;
    }
    return oldest;
  }

  togglePin(index) {
    this.pinned[index] = !this.pinned[index];
    this.save();
    if (this.tiles[index]) this.tiles[index].paintMark();
  }

  render() {
    this.grid.dataset.layout = this.layout;
    this.layoutButtons.forEach(b => b.classList.toggle("active", Number(b.dataset.layout) === this.layout));
    while (this.tiles.length < this.layout) this.tiles.push(new Tile(this, this.tiles.length));
    while (this.tiles.length > this.layout) this.tiles.pop().stop();
    this.grid.replaceChildren(...this.tiles.map(t => t.el));
    for (const t of this.tiles) {
      if (this.catalog) t.refreshOptions(this.catalog);
      const want = this.channels[t.index] || "";
      if (want !== t.channelId) t.play(want);
    }
  }

  setLayout(n) { this.layout = n; this.save(); this.render(); }

  assign(index, channelId) {
    const before = this.channels[index];
    if (before && before !== channelId) this.marks.delete(before); // its operator moved on
    this.channels[index] = channelId;
    this.openedAt[index] = channelId ? Date.now() : 0;
    this.save();
    if (this.tiles[index]) this.tiles[index].play(channelId);
  }

  // Put a camera on the wall: the tile that already shows it, else a free one, else the oldest
  // unpinned one; an automatic call-up (auto) leaves the wall alone when every tile is pinned.
  show(camera, auto = false) {
    const channelId = this.key(camera);
    const shown = this.tiles.find(t => t.channelId === channelId);
    if (shown) { shown.flash(); return; }
    let index = this.freeSlot();
    if (index < 0 && auto) return;
    if (index < 0) index = this.tiles.length - 1;
    this.assign(index, channelId);
    this.tiles[index].flash();
  }

  clear() { this.tiles.forEach((t, i) => this.assign(i, "")); }

  stopAll() { this.tiles.forEach(t => t.stop()); this.tiles.forEach(t => { t.channelId = ""; }); }
}
