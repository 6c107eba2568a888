// Live wall: 1/4/9/16/25 tiles, each a WebRTC <video> of one camera.  The wall's cameras are a
// list in tile order, page after page: the auto tour turns the pages every N seconds.  Named
// walls live on the server per user (walls.js); the current, unsaved wall survives reloads in
// localStorage.  Cameras come from the per-tile list or by drag and drop from the channel tree.
// A tile's camera is its key "device/channel" (catalog.js): two devices may list one channel ID.
import { api, h } from "./api.js";
import { cameraLabel, cameraOptions, cameraPath, keyOf, loadCatalog, withDevice } from "./catalog.js";
import { LEVELS } from "./levels.js";
import { PtzPanel, hasPtz } from "./ptz.js";
import { DRAG_TYPE, channelTree, walls } from "./walls.js";

const TILE_DRAG_TYPE = "application/x-vms-tile"; // a tile's index, dragged onto another tile
import { LiveViewer } from "./webrtc.js";

export const LAYOUTS = [1, 4, 9, 16, 25];
const MAX_CHANNELS = 256; // over all pages (the server's limit too)
const MAX_TOUR_S = 3600;
const TOUR_DEFAULT_S = 10; // "tour selected" with the tour off
const RETRY_MIN_MS = 2000;
const RETRY_MAX_MS = 15000; // an offline camera is tried again at least this often
const STATS_EVERY_MS = 5000; // the hub's figures (server side)
const SAMPLE_EVERY_MS = 1000; // the browser's own getStats()
const OFFLINE_AFTER_MS = 5000; // no decoded frame for this long: the camera is offline
const HUB_DOWN = ["lost", "closed", "no-sip"]; // hub states: nothing is coming from the camera

const STATE_LABEL = {
  new: "连接中 connecting", connecting: "连接中 connecting", connected: "等待画面 waiting for video",
  disconnected: "中断 interrupted", failed: "失败 failed", closed: "已关闭 closed",
};
const HEALTH_LABEL = {
  idle: "", connecting: "连接中 connecting", waiting: "等待画面 waiting", live: "实时 live",
  offline: "离线 offline", reconnecting: "重连中 reconnecting",
};

function fmtRate(bps) {
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} Mb/s`;
  return `${Math.round(bps / 1000)} kb/s`;
}

class Tile {
  constructor(wall, index) {
    this.wall = wall;
    this.index = index;
    this.channelId = "";
    this.viewer = null;
    this.retryMs = RETRY_MIN_MS;
    this.retryTimer = null;
    this.health = "idle";
    this.hubState = "";
    this.lastFrameAt = 0;
    this.hadFrames = false;
    this.lastSample = null;
    this.ptz = null;
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
      onclick: () => { this.video.muted = !this.video.muted; this.sound.textContent = this.video.muted ? "♪✕" : "♪"; } }, "♪✕");
    this.ptzButton = h("button", { class: "small ptz-toggle", title: "云台 PTZ", hidden: true, onclick: () => this.togglePtz() }, "✥");
    this.fullButton = h("button", { class: "small full", title: "全屏 Full screen (双击 double click)", onclick: () => this.toggleFullscreen() }, "⤢");
    this.healthLabel = h("span", { class: "tile-health" });
    this.rate = h("span", { class: "tile-rate", hidden: true });
    this.overlay = h("div", { class: "tile-overlay" }, this.healthLabel, this.rate);
    this.topOverlay = h("div", { class: "tile-overlay top" }, this.status, this.info);
    this.video.addEventListener("resize", () => {
      this.showInfo();
      if (this.status.dataset.state === "connected") this.status.textContent = "实时 live";
    });
    this.body = h("div", { class: "tile-body" }, this.video, this.topOverlay, this.overlay);
    this.el = h("div", { class: "tile", "data-index": index, "data-health": "idle", "data-i18n-keep": "title" }, // title: the camera's name
      h("div", { class: "tile-bar" }, this.select, this.levelBadge, this.ptzButton, this.sound,
        this.fullButton, this.pin,
        h("button", { class: "small", title: "关闭 Close", onclick: () => this.wall.assign(this.index, "") }, "✕")),
      this.body);
    this.el.addEventListener("dblclick", ev => {
      if (!ev.target.closest("select, button, input, .ptz-panel")) this.toggleFullscreen();
    });
    // a camera dragged from the channel tree lands on this tile; a tile's picture dragged
    // onto another tile swaps the two
    this.body.draggable = true;
    this.body.addEventListener("dragstart", ev => {
      if (!this.channelId || ev.target.closest(".ptz-panel")) { ev.preventDefault(); return; }
      ev.dataTransfer.setData(TILE_DRAG_TYPE, String(this.index));
      ev.dataTransfer.effectAllowed = "move";
    });
    this.el.addEventListener("dragover", ev => {
      const types = ev.dataTransfer.types;
      if (!types.includes(DRAG_TYPE) && !types.includes(TILE_DRAG_TYPE)) return;
      ev.preventDefault();
      ev.dataTransfer.dropEffect = types.includes(TILE_DRAG_TYPE) ? "move" : "copy";
      this.el.classList.add("drop");
    });
    this.el.addEventListener("dragleave", () => this.el.classList.remove("drop"));
    this.el.addEventListener("drop", ev => {
      this.el.classList.remove("drop");
      const from = ev.dataTransfer.getData(TILE_DRAG_TYPE);
      if (from !== "") {
        ev.preventDefault();
        if (Number(from) !== this.index) { this.wall.swap(Number(from), this.index); this.flash(); }
        return;
      }
      const key = ev.dataTransfer.getData(DRAG_TYPE);
      if (!key) return;
      ev.preventDefault();
      this.wall.assign(this.index, key);
      this.flash();
    });
  }

  // Fullscreen API where the browser allows it, else the CSS fallback (a fixed, page-size tile).
  toggleFullscreen() {
    if (document.fullscreenElement === this.el) { document.exitFullscreen().catch(() => {}); return; }
    if (this.el.classList.contains("maximised")) { this.el.classList.remove("maximised"); return; }
    const fallback = () => this.el.classList.add("maximised");
    if (this.el.requestFullscreen && document.fullscreenEnabled !== false) this.el.requestFullscreen().catch(fallback);
    else fallback();
  }

  togglePtz() {
    if (this.ptz) { this.closePtz(); return; }
    this.ptz = new PtzPanel(this.channelId);
    this.body.append(this.ptz.el);
    this.ptzButton.classList.add("active");
  }

  closePtz() {
    if (!this.ptz) return;
    this.ptz.close();
    this.ptz.el.remove();
    this.ptz = null;
    this.ptzButton.classList.remove("active");
  }

  showInfo() {
    const size = this.video.videoWidth ? `${this.video.videoWidth}×${this.video.videoHeight}` : "";
    const ttff = this.el.dataset.ttffMs ? `首帧 first frame ${this.el.dataset.ttffMs} ms` : "";
    this.info.textContent = [size, this.stream, ttff].filter(Boolean).join(" · ");
  }

  // The hub's view of the camera (what arrives from the NVR): frame rate, bitrate, loss.
  async pollStream() {
    if (!this.channelId || document.hidden) return;
    try {
      const st = await api(withDevice(`/api/streams/${cameraPath(this.channelId)}`, this.channelId));
      const loss = st.loss_pct ? ` ${st.loss_pct}% loss` : "";
      this.stream = `${Math.round(st.fps)} fps ${Math.round(st.bitrate_bps / 1000)} kb/s${loss}`;
      this.hubState = st.state || "";
    } catch (_) { this.stream = ""; }
    this.showInfo();
    this.checkStalled(performance.now());
  }

  // What this browser receives (RTCPeerConnection.getStats): frames decoded and bytes per
  // second for the overlay; frames that stop coming mean the camera went offline, frames that
  // come again mean it is back (the peer stays up meanwhile, or is reconnected by retry()).
  async sample() {
    const pc = this.viewer && this.viewer.pc;
    if (!pc || document.hidden) return;
    let report;
    try { report = await pc.getStats(); } catch (_) { return; }
    let inbound = null;
    report.forEach(s => { if (s.type === "inbound-rtp" && (s.kind || s.mediaType) === "video") inbound = s; });
    const now = performance.now();
    if (inbound) {
      const frames = inbound.framesDecoded || 0;
      const bytes = inbound.bytesReceived || 0;
      const prev = this.lastSample;
      this.lastSample = { at: now, frames, bytes };
      if (prev && now > prev.at) {
        const dt = (now - prev.at) / 1000;
        const fps = Math.max(0, (frames - prev.frames) / dt);
        const bps = Math.max(0, ((bytes - prev.bytes) * 8) / dt);
        this.rate.textContent = `${fps.toFixed(fps < 10 ? 1 : 0)} fps · ${fmtRate(bps)}`;
        this.rate.hidden = false;
        this.el.dataset.fps = fps.toFixed(1);
        this.el.dataset.bps = String(Math.round(bps));
      }
      if (frames > (prev ? prev.frames : 0)) {
        this.lastFrameAt = now;
        this.hadFrames = true;
        if (this.health !== "live") this.setHealth("live");
      }
    }
    this.checkStalled(now);
  }

  checkStalled(now) {
    if (!this.channelId || !this.viewer || this.health === "reconnecting") return;
    const stalled = this.hadFrames ? now - this.lastFrameAt > OFFLINE_AFTER_MS : HUB_DOWN.includes(this.hubState);
    if (stalled && this.health !== "offline") this.setHealth("offline");
  }

  setHealth(health) {
    this.health = health;
    this.el.dataset.health = health;
    this.healthLabel.dataset.health = health;
    this.healthLabel.textContent = HEALTH_LABEL[health] || health;
    if (health !== "live") this.rate.hidden = health === "idle";
  }

  flash() {
    this.el.classList.remove("flash");
    void this.el.offsetWidth; // restart the animation
    this.el.classList.add("flash");
  }

  refreshOptions(catalog) {
    this.select.innerHTML = cameraOptions(catalog, this.channelId);
    this.select.value = this.channelId;
  }

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
    const channel = channelId && this.wall.catalog ? this.wall.catalog.channels.get(keyOf(this.wall.catalog, channelId)) : null;
    this.el.title = channelId ? cameraLabel(this.wall.catalog, channelId) : "";
    this.el.dataset.camera = channelId;
    this.ptzButton.hidden = !hasPtz(channel);
    this.hadFrames = false;
    this.lastFrameAt = 0;
    this.hubState = "";
    this.paintMark();
    delete this.el.dataset.ttffMs;
    if (!channelId) { this.setStatus("idle"); this.status.textContent = "空闲 idle"; this.setHealth("idle"); return; }
    this.watchFirstFrame(channelId);
    this.connect();
  }

  // Time to first frame: from the camera's choice to the first picture the browser shows
  // (requestVideoFrameCallback; the first decoded frame where the browser lacks it), kept in
  // data-ttff-ms and shown in the tile's info line.
  watchFirstFrame(channelId) {
    const started = performance.now();
    const done = () => {
      if (this.channelId !== channelId || this.el.dataset.ttffMs) return;
      this.el.dataset.ttffMs = String(Math.round(performance.now() - started));
      this.showInfo();
    };
    if (this.video.requestVideoFrameCallback) this.video.requestVideoFrameCallback(done);
    else this.video.addEventListener("loadeddata", done, { once: true });
  }

  connect() {
    clearInterval(this.statsTimer);
    clearInterval(this.sampleTimer);
    this.statsTimer = setInterval(() => this.pollStream(), STATS_EVERY_MS);
    this.sampleTimer = setInterval(() => this.sample(), SAMPLE_EVERY_MS);
    setTimeout(() => this.pollStream(), 1500);
    this.lastSample = null;
    const viewer = new LiveViewer(this.channelId, this.video, state => {
      if (viewer !== this.viewer) return;
      this.setStatus(state);
      if (state === "connected") {
        this.retryMs = RETRY_MIN_MS;
        if (this.health !== "live" && this.health !== "offline") this.setHealth("waiting");
      }
      if (state === "failed" || state === "disconnected" || state === "closed") this.retry();
    });
    this.viewer = viewer;
    this.setStatus("connecting");
    if (this.health !== "offline" && this.health !== "reconnecting") this.setHealth("connecting");
    viewer.open().catch(err => {
      if (viewer !== this.viewer) return;
      this.status.textContent = `错误 error: ${err.message}`;
      this.status.dataset.state = "failed";
      if ([403, 404, 415, 429].includes(err.status)) { this.setHealth("idle"); this.healthLabel.textContent = err.message; return; } // those will not heal by waiting
      if ([502, 503, 504].includes(err.status)) this.setHealth("offline"); // the device does not answer
      this.retry();
    });
  }

  retry() {
    if (this.retryTimer || !this.channelId) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    if (this.health !== "offline") this.setHealth("reconnecting");
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.channelId) return;
      if (this.viewer) this.viewer.close();
      this.connect();
    }, wait);
  }

  stop() {
    clearInterval(this.statsTimer);
    clearInterval(this.sampleTimer);
    this.stream = "";
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.closePtz();
    if (this.viewer) { this.viewer.close(); this.viewer = null; }
    this.info.textContent = "";
    this.rate.textContent = "";
    this.rate.hidden = true;
    this.retryMs = RETRY_MIN_MS;
  }
}

export class LiveWall {
  // storeKey is per user: one operator's wall is not another user's (who may not see its cameras).
  constructor(storeKey) {
    this.storeKey = storeKey;
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem(storeKey) || "{}"); } catch (_) { /* reset */ }
    this.layout = LAYOUTS.includes(saved.layout) ? saved.layout : 4;
    this.channels = Array.isArray(saved.channels) ? saved.channels.slice(0, MAX_CHANNELS).map(c => (typeof c === "string" ? c : "")) : [];
    this.pinned = Array.isArray(saved.pinned) ? saved.pinned.slice(0, 25) : [];
    this.page = Number.isInteger(saved.page) && saved.page >= 0 ? saved.page : 0;
    this.tourS = Number.isInteger(saved.tourS) ? Math.min(Math.max(saved.tourS, 0), MAX_TOUR_S) : 0;
    this.wallName = typeof saved.wall === "string" ? saved.wall : "";
    this.showTree = saved.showTree !== false;
    this.openedAt = []; // when each tile got its camera: linkage replaces the oldest first
    this.marks = new Map(); // camera → {level, ref} of the sensor warning that opened it
    this.tiles = [];
    this.catalog = null;
    this.tourTimer = null;
    this.grid = h("div", { class: "wall", id: "wall" });
    this.layoutButtons = LAYOUTS.map(n => h("button", { "data-layout": n, onclick: () => this.setLayout(n) }, `${n} 画面`));
    this.autoPop = saved.autoPop !== false;
    const autoPop = h("input", { type: "checkbox", id: "auto-pop", checked: this.autoPop,
      onchange: e => { this.autoPop = e.target.checked; this.save(); } });
    this.pageLabel = h("span", { id: "wall-page", class: "muted" });
    this.tourInput = h("input", { type: "number", id: "tour-s", min: 0, max: MAX_TOUR_S, step: 1, value: this.tourS, class: "tour-s",
      title: "轮巡间隔 秒, 0 = 关 tour period in seconds, 0 = off", onchange: () => this.setTour(Number(this.tourInput.value)) });
    this.wallSelect = h("select", { id: "wall-select", "aria-label": "墙 Wall", onchange: () => { if (this.wallSelect.value) this.nameInput.value = this.wallSelect.value; } });
    this.nameInput = h("input", { id: "wall-name", placeholder: "名称 name", maxlength: 64, value: this.wallName, "aria-label": "墙名称 wall name" });
    this.wallMessage = h("span", { id: "wall-message", class: "muted", role: "status" });
    this.treeSlot = h("div", { class: "tree-slot", hidden: !this.showTree });
    this.treeButton = h("button", { class: this.showTree ? "active" : "", title: "通道树 channel tree", onclick: () => this.toggleTree() }, "☰ 通道 Channels");
    this.el = h("div", { class: "live-view" },
      h("div", { class: "toolbar" }, h("span", {}, "分屏 Layout: "), this.layoutButtons,
        h("button", { class: "small", title: "上一页 previous page", id: "page-prev", onclick: () => this.turnPage(-1) }, "◀"), this.pageLabel,
        h("button", { class: "small", title: "下一页 next page", id: "page-next", onclick: () => this.turnPage(1) }, "▶"),
        h("label", {}, "轮巡 Tour ", this.tourInput, " s"),
        h("button", { onclick: () => this.clear() }, "全部关闭 Close all"),
        h("label", { title: "报警或预警时自动调出摄像机 show the cameras of an alarm or sensor warning" }, autoPop, " 报警联动 auto-show")),
      h("div", { class: "toolbar wall-bar" }, this.treeButton, h("span", {}, "墙 Wall: "), this.wallSelect,
        h("button", { id: "wall-load", onclick: () => this.loadWall(this.wallSelect.value) }, "载入 Load"),
        this.nameInput,
        h("button", { id: "wall-save", onclick: () => this.saveWall(this.nameInput.value) }, "另存为 Save as…"),
        h("button", { id: "wall-delete", onclick: () => this.deleteWall(this.wallSelect.value) }, "删除 Delete"),
        this.wallMessage),
      h("div", { class: "live-body" }, this.treeSlot, this.grid));
    this.onFullscreen = () => this.tiles.forEach(t => t.el.classList.toggle("fullscreen", document.fullscreenElement === t.el));
    document.addEventListener("fullscreenchange", this.onFullscreen);
  }

  async mount(root) {
    root.replaceChildren(this.el);
    this.catalog = await loadCatalog();
    // a layout saved by an older version names cameras by channel ID alone
    this.channels = this.channels.map(c => (c ? keyOf(this.catalog, c) : c));
    this.treeSlot.replaceChildren(channelTree(this.catalog, { onShow: key => this.show(key), onTour: keys => this.tourChannels(keys) }));
    this.render();
    this.restartTour();
    await this.refreshWalls(this.wallName);
  }

  key(camera) { return keyOf(this.catalog, camera); }

  save() {
    localStorage.setItem(this.storeKey, JSON.stringify({
      layout: this.layout, channels: this.channels, autoPop: this.autoPop, pinned: this.pinned,
      page: this.page, tourS: this.tourS, wall: this.wallName, showTree: this.showTree,
    }));
  }

  toggleTree() {
    this.showTree = !this.showTree;
    this.treeSlot.hidden = !this.showTree;
    this.treeButton.classList.toggle("active", this.showTree);
    this.save();
  }

  // --- named walls on the server -------------------------------------------------------

  note(text, bad = false) {
    this.wallMessage.textContent = text;
    this.wallMessage.dataset.error = bad ? "1" : "";
  }

  async refreshWalls(selected = "") {
    let list = [];
    try { list = await walls.list(); } catch (e) { this.note(`墙列表失败 walls: ${e.message}`, true); }
    this.wallSelect.replaceChildren(h("option", { value: "" }, "— 未保存 unsaved —"),
      ...list.map(w => h("option", { value: w.name }, `${w.name} (${w.layout})`)));
    this.wallSelect.value = list.some(w => w.name === selected) ? selected : "";
  }

  // The wall as saved: layout, cameras over all pages (trailing empty tiles dropped), tour.
  wallBody() {
    const channels = this.channels.slice(0, MAX_CHANNELS);
    while (channels.length && !channels[channels.length - 1]) channels.pop();
    return { layout: this.layout, channels, tour_s: this.tourS };
  }

  async saveWall(name) {
    name = (name || "").trim();
    if (!name) { this.note("请输入名称 enter a name", true); this.nameInput.focus(); return; }
    try {
      const saved = await walls.save(name, this.wallBody());
      this.wallName = saved.name;
      this.save();
      await this.refreshWalls(saved.name);
      this.note(`已保存 saved: ${saved.name}`);
    } catch (e) { this.note(`保存失败 not saved: ${e.message}`, true); }
  }

  async loadWall(name) {
    if (!name) { this.note("请选择墙 choose a wall", true); return; }
    try {
      const wall = await walls.get(name);
      this.layout = LAYOUTS.includes(wall.layout) ? wall.layout : 4;
      this.channels = wall.channels.map(c => c || "");
      this.marks.clear();
      this.page = 0;
      this.tourS = wall.tour_s || 0;
      this.tourInput.value = this.tourS;
      this.wallName = wall.name;
      this.nameInput.value = wall.name;
      this.save();
      this.render();
      this.restartTour();
      this.note(`已载入 loaded: ${wall.name}`);
    } catch (e) { this.note(`载入失败 not loaded: ${e.message}`, true); }
  }

  async deleteWall(name) {
    if (!name) { this.note("请选择墙 choose a wall", true); return; }
    if (!confirm(`删除墙 delete wall "${name}"?`)) return;
    try {
      await walls.remove(name);
      if (this.wallName === name) { this.wallName = ""; this.save(); }
      await this.refreshWalls();
      this.note(`已删除 deleted: ${name}`);
    } catch (e) { this.note(`删除失败 not deleted: ${e.message}`, true); }
  }

  // --- pages and the auto tour ------------------------------------------------------------

  pages() {
    let last = this.channels.length - 1;
    while (last >= 0 && !this.channels[last]) last--;
    return Math.max(1, Math.ceil((last + 1) / this.layout), this.page + 1);
  }

  slot(index) { return this.page * this.layout + index; }

  turnPage(step) {
    let last = this.channels.length - 1;
    while (last >= 0 && !this.channels[last]) last--;
    const used = Math.max(1, Math.ceil((last + 1) / this.layout));
    // one empty page past the last used one, so a new page can be filled by hand
    const pages = Math.min(used + 1, Math.ceil(MAX_CHANNELS / this.layout));
    this.page = (this.page + step + pages) % pages;
    this.save();
    this.render();
  }

  setTour(seconds) {
    this.tourS = Number.isFinite(seconds) ? Math.min(Math.max(Math.round(seconds), 0), MAX_TOUR_S) : 0;
    this.tourInput.value = this.tourS;
    this.save();
    this.restartTour();
  }

  // Every tourS seconds the next page of cameras comes up (a wall of one page does not move).
  restartTour() {
    clearInterval(this.tourTimer);
    this.tourTimer = null;
    if (!this.tourS) return;
    this.tourTimer = setInterval(() => {
      let last = this.channels.length - 1;
      while (last >= 0 && !this.channels[last]) last--;
      const used = Math.max(1, Math.ceil((last + 1) / this.layout));
      if (used < 2 && this.page === 0) return;
      this.page = (this.page + 1) % used;
      this.save();
      this.render();
    }, this.tourS * 1000);
  }

  // The ticked cameras of the tree, page after page, touring (every TOUR_DEFAULT_S when off).
  tourChannels(keys) {
    if (!keys.length) { this.note("请在通道树中勾选摄像机 tick cameras in the tree", true); return; }
    this.channels = keys.slice(0, MAX_CHANNELS);
    this.marks.clear();
    this.page = 0;
    if (!this.tourS) this.tourS = TOUR_DEFAULT_S;
    this.tourInput.value = this.tourS;
    this.save();
    this.render();
    this.restartTour();
  }

  // --- linkage (alarms, sensor warnings) --------------------------------------------------

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
    if (placed.length) this.restartTour(); // a called-up camera stays at least one period
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
    for (let i = 0; i < this.layout; i++) if ((this.channels[this.slot(i)] || "") === channelId) return i;
    return -1;
  }

  // A tile for an automatic call-up: a free one, else the one holding its camera longest, never
  // a pinned one; -1 when none may be taken.
  freeSlot(taken = new Set()) {
    let oldest = -1;
    for (let i = 0; i < this.layout; i++) {
      if (taken.has(i)) continue;
      if (!this.channels[this.slot(i)]) return i;
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
    const pages = this.pages();
    this.pageLabel.textContent = `页 Page ${this.page + 1}/${pages}`;
    for (const t of this.tiles) {
      const want = this.channels[this.slot(t.index)] || "";
      if (this.catalog) t.refreshOptions(this.catalog);
      if (want !== t.channelId) t.play(want);
    }
  }

  setLayout(n) {
    const first = this.page * this.layout; // keep the first camera shown on the page shown
    this.layout = n;
    this.page = Math.floor(first / n);
    this.save();
    this.render();
  }

  assign(index, channelId) {
    const slot = this.slot(index);
    const before = this.channels[slot];
    if (before && before !== channelId) this.marks.delete(before); // its operator moved on
    while (this.channels.length < slot) this.channels.push("");
    this.channels[slot] = channelId;
    this.openedAt[index] = channelId ? Date.now() : 0;
    this.save();
    if (this.tiles[index]) this.tiles[index].play(channelId);
    this.pageLabel.textContent = `页 Page ${this.page + 1}/${this.pages()}`;
  }

  // Two tiles of the page trade cameras (a tile dragged onto another); marks and pins stay
  // with the cameras' tiles as they were, the wall is saved.
  swap(a, b) {
    const sa = this.slot(a), sb = this.slot(b);
    const top = Math.max(sa, sb);
    while (this.channels.length <= top) this.channels.push("");
    [this.channels[sa], this.channels[sb]] = [this.channels[sb], this.channels[sa]];
    [this.openedAt[a], this.openedAt[b]] = [this.openedAt[b], this.openedAt[a]];
    this.save();
    for (const i of [a, b]) if (this.tiles[i]) this.tiles[i].play(this.channels[this.slot(i)] || "");
  }

  // Put a camera on the wall: the tile that already shows it (turning to its page), else a
  // free one, else the oldest unpinned one; an automatic call-up (auto) leaves the wall alone
  // when every tile is pinned.
  show(camera, auto = false) {
    const channelId = this.key(camera);
    const shown = this.tiles.find(t => t.channelId === channelId);
    if (shown) { shown.flash(); if (auto) this.restartTour(); return; }
    const at = this.channels.indexOf(channelId);
    if (at >= 0 && this.tiles.length) {
      this.page = Math.floor(at / this.layout);
      this.save();
      this.render();
      this.tiles[at % this.layout].flash();
      this.restartTour();
      return;
    }
    let index = this.freeSlot();
    if (index < 0 && auto) return;
    if (index < 0) index = this.tiles.length - 1;
    this.assign(index, channelId);
    this.tiles[index].flash();
    this.restartTour();
  }

  clear() {
    this.tiles.forEach(t => t.stop());
    this.channels = [];
    this.marks.clear();
    this.page = 0;
    this.save();
    this.render();
  }

  stopAll() {
    clearInterval(this.tourTimer);
    this.tourTimer = null;
    document.removeEventListener("fullscreenchange", this.onFullscreen);
    this.tiles.forEach(t => t.stop());
    this.tiles.forEach(t => { t.channelId = ""; });
  }
}
