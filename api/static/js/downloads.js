// Downloads: a camera's range queued as an MP4 — from the NVR at ×N speed or from our own
// recordings — with its progress (media time reached, bytes), cancel, delete and the file.
import { api, fmtTime, h, withToken } from "./api.js";
import { cameraBody } from "./catalog.js";

const STATES = {
  queued: "排队 queued", running: "下载中 running", done: "完成 done", failed: "失败 failed",
  cancelled: "已取消 cancelled", expired: "已过期 expired",
};
const DOWNLOAD_SPEEDS = [1, 2, 4, 8];
const REFRESH_MS = 1500;
const ACTIVE = new Set(["queued", "running"]);

function localInput(d) {
  const p = n => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function megabytes(n) { return `${(n / 1e6).toFixed(1)} MB`; }

export class DownloadsPanel {
  constructor() {
    this.channelId = "";
    this.source = "recorder";
    this.timer = null;
    this.fromInput = h("input", { type: "datetime-local", step: 1, "aria-label": "下载开始 download from", class: "download-from" });
    this.toInput = h("input", { type: "datetime-local", step: 1, "aria-label": "下载结束 download to", class: "download-to" });
    this.speedSel = h("select", { "aria-label": "下载倍速 download speed", class: "download-speed" },
      DOWNLOAD_SPEEDS.map(v => h("option", { value: v, selected: v === 4 }, `×${v}`)));
    this.msg = h("span", { class: "muted download-msg" });
    this.rows = h("tbody");
    this.el = h("section", { class: "downloads" },
      h("h3", {}, "下载 Downloads"),
      h("div", { class: "toolbar" }, "从 From ", this.fromInput, " 到 To ", this.toInput, " ", this.speedSel,
        h("button", { class: "download-create", onclick: () => this.create() }, "下载 MP4 Download"), this.msg),
      h("table", { id: "downloads" },
        h("thead", {}, h("tr", {}, ["摄像机 camera", "来源 source", "时段 range", "状态 state", "进度 progress", "", ""].map(t => h("th", {}, t)))),
        this.rows));
  }

  // What the replay view shows: the camera, its source and a range to offer as the default.
  setContext(channelId, source, start, end) {
    this.channelId = channelId;
    this.source = source;
    this.fromInput.value = localInput(start);
    this.toInput.value = localInput(end);
    this.speedSel.disabled = source !== "device"; // our recordings are exported, not fetched
  }

  async create() {
    if (!this.channelId) { this.msg.textContent = "请选择摄像机 choose a camera"; return; }
    const body = {
      ...cameraBody(this.channelId), // the camera's key "device/channel"
      source: this.source === "device" ? "device" : "recording",
      start: new Date(this.fromInput.value).toISOString(),
      end: new Date(this.toInput.value).toISOString(),
      speed: Number(this.speedSel.value),
    };
    try {
      const job = await api("/api/downloads", { method: "POST", body: JSON.stringify(body) });
      this.msg.textContent = `已排队 queued ${job.id.slice(0, 8)}`;
    } catch (e) {
      this.msg.textContent = `下载失败 download refused: ${e.message}`;
    }
    await this.refresh();
  }

  async refresh() {
    clearTimeout(this.timer);
    let jobs;
    try { jobs = await api("/api/downloads?limit=20"); }
    catch (e) { this.msg.textContent = `下载列表失败 list failed: ${e.message}`; return; }
    this.rows.replaceChildren(...jobs.map(j => this.row(j)));
    if (jobs.some(j => ACTIVE.has(j.state))) this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  row(job) {
    const reached = job.reached ? ` · ${fmtTime(job.reached)}` : "";
    const detail = job.state === "failed" ? job.error
      : job.state === "done" ? `${job.duration_s.toFixed(1)} s · ${megabytes(job.size)}`
      : `${megabytes(job.bytes_received)}${reached}`;
    const actions = [];
    if (job.file_url) actions.push(h("a", { class: "button small download-file", href: withToken(job.file_url), download: "" }, "取回 Fetch"));
    if (ACTIVE.has(job.state)) actions.push(h("button", { class: "small download-cancel", onclick: () => this.act(job, "cancel") }, "取消 Cancel"));
    else actions.push(h("button", { class: "small download-delete", onclick: () => this.act(job, "delete") }, "删除 Delete"));
    return h("tr", { "data-download": job.id, "data-state": job.state },
      h("td", {}, job.channel_id),
      h("td", {}, job.source === "device" ? `设备 NVR ×${job.speed}` : "本地 recorded"),
      h("td", {}, `${fmtTime(job.start)} – ${fmtTime(job.end)}`),
      h("td", { class: "state" }, STATES[job.state] || job.state),
      h("td", {}, h("progress", { max: 1, value: job.progress }), " ", `${Math.round(job.progress * 100)}%`),
      h("td", { class: "muted" }, detail),
      h("td", { class: "actions" }, actions));
  }

  async act(job, what) {
    try {
      if (what === "cancel") await api(`/api/downloads/${job.id}/cancel`, { method: "POST" });
      else await api(`/api/downloads/${job.id}`, { method: "DELETE" });
    } catch (e) { this.msg.textContent = `${what} failed: ${e.message}`; }
    await this.refresh();
  }

  stop() { clearTimeout(this.timer); this.timer = null; }
}
