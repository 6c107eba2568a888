// PTZ panel of a live tile: eight directions and zoom while a button is held (stop on release,
// so a lost mouse-up never leaves a camera turning), and presets to go to.
// Commands go to POST /api/sip/devices/{device}/channels/{channel}/ptz (api/routers/sip.py).
import { api, h } from "./api.js";
import { parseKey } from "./catalog.js";

const DIRECTIONS = [
  ["upleft", "↖", "左上 up-left"], ["up", "↑", "上 up"], ["upright", "↗", "右上 up-right"],
  ["left", "←", "左 left"], null, ["right", "→", "右 right"],
  ["downleft", "↙", "左下 down-left"], ["down", "↓", "下 down"], ["downright", "↘", "右下 down-right"],
];

// Catalog PTZType: 1 球机 dome, 2 半球 half dome, 3 固定枪机 fixed bullet, 4 遥控枪机 remote
// bullet; 0 the device did not say.  Known fixed cameras (2, 3) get no panel; an unknown one
// does (the device refuses a command it cannot carry out).
export function hasPtz(channel) {
  if (!channel || !channel.device) return false;
  return [0, 1, 4].includes(Number(channel.ptz_type || 0));
}

export class PtzPanel {
  constructor(cameraKey) {
    const { deviceId, channelId } = parseKey(cameraKey);
    this.base = `/api/sip/devices/${encodeURIComponent(deviceId)}/channels/${encodeURIComponent(channelId)}`;
    this.moving = false;
    this.speed = h("input", { type: "range", min: 16, max: 255, value: 96, title: "速度 Speed", "aria-label": "速度 Speed" });
    this.message = h("span", { class: "ptz-msg", role: "status" });
    this.presetNo = h("input", { type: "number", min: 1, max: 255, value: 1, class: "ptz-preset", "aria-label": "预置位 Preset" });
    this.presetList = h("select", { class: "ptz-presets", hidden: true, "aria-label": "预置位列表 Presets",
      onchange: () => { if (this.presetList.value) this.presetNo.value = this.presetList.value; } });
    const pad = h("div", { class: "ptz-pad" }, DIRECTIONS.map(d => (d
      ? this.hold(d[1], d[2], { action: "move", direction: d[0] }, d[0])
      : h("button", { type: "button", class: "ptz-btn", title: "停止 Stop", "data-ptz": "stop",
        onclick: () => this.send({ action: "stop" }) }, "■"))));
    this.el = h("div", { class: "ptz-panel", "data-ptz-panel": cameraKey },
      pad,
      h("div", { class: "ptz-row" },
        this.hold("＋", "放大 Zoom in", { action: "zoom", zoom: "in" }, "zoom-in"),
        this.hold("－", "缩小 Zoom out", { action: "zoom", zoom: "out" }, "zoom-out"),
        this.speed),
      h("div", { class: "ptz-row" }, "预置位 Preset ", this.presetNo, this.presetList,
        h("button", { type: "button", class: "small", "data-ptz": "goto",
          onclick: () => this.send({ action: "preset", preset_action: "call", preset: Number(this.presetNo.value) }) }, "调用 Go")),
      this.message);
    this.loadPresets();
  }

  // A button that moves while pressed: pointer capture keeps the release ours even when the
  // pointer leaves the button; keyboard space/enter work the same way.
  hold(label, title, body, name) {
    const b = h("button", { type: "button", class: "ptz-btn", title, "data-ptz": name }, label);
    const start = ev => {
      ev.preventDefault();
      if (ev.pointerId !== undefined && b.setPointerCapture) { try { b.setPointerCapture(ev.pointerId); } catch (_) { /* synthetic */ } }
      this.moving = true;
      const speed = Number(this.speed.value);
      this.send(body.action === "zoom" ? { ...body, zoom_speed: Math.max(1, Math.round(speed / 17)) } : { ...body, speed });
    };
    const stop = () => { if (this.moving) { this.moving = false; this.send({ action: "stop" }); } };
    b.addEventListener("pointerdown", start);
    for (const ev of ["pointerup", "pointercancel", "lostpointercapture", "blur"]) b.addEventListener(ev, stop);
    b.addEventListener("keydown", ev => { if ((ev.key === " " || ev.key === "Enter") && !ev.repeat && !this.moving) start(ev); });
    b.addEventListener("keyup", ev => { if (ev.key === " " || ev.key === "Enter") stop(); });
    return b;
  }

  async send(body) {
    try {
      await api(`${this.base}/ptz`, { method: "POST", body: JSON.stringify(body) });
      this.message.textContent = "";
      this.message.dataset.error = "";
    } catch (e) {
      this.message.textContent = `云台失败 PTZ failed: ${e.message}`;
      this.message.dataset.error = String(e.status || "");
    }
  }

  // The device's preset list (PresetQuery); many devices do not answer it, so a number box
  // stays the way to go to any preset.
  async loadPresets() {
    try {
      const presets = await api(`${this.base}/presets`);
      if (!presets.length) return;
      this.presetList.replaceChildren(h("option", { value: "" }, "— 列表 list —"),
        ...presets.map(p => h("option", { value: Number(p.preset_id) }, `${p.preset_id} ${p.name || ""}`)));
      this.presetList.hidden = false;
    } catch (_) { /* not answered: the number box does */ }
  }

  close() { if (this.moving) { this.moving = false; this.send({ action: "stop" }); } }
}
