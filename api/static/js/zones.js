// Zone and line editor on the camera's current picture: polygons (click to add points, double
// click to close), lines (two clicks), points dragged, a vertex removed by right click, a shape
// deleted.  Coordinates are [x, y] normalised to 0..1 of the frame, as analyzers/config.py wants.
import { h } from "./api.js";

const HIT_PX = 9; // how near (CSS pixels) a click must be to take a vertex
const COLORS = { zone: "#f5a524", line: "#3d8bfd", selected: "#2fbf71" };

function round4(v) { return Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000; }

// Even-odd ray casting, as analyzers/geometry.py does it.
export function pointInPolygon([x, y], poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [x1, y1] = poly[i], [x2, y2] = poly[j];
    if ((y1 > y) !== (y2 > y) && x < x1 + ((y - y1) * (x2 - x1)) / (y2 - y1)) inside = !inside;
  }
  return inside;
}

function segmentDistance(p, a, b) {
  const [px, py] = p, [ax, ay] = a, [bx, by] = b;
  const dx = bx - ax, dy = by - ay, len = dx * dx + dy * dy;
  const t = len ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len)) : 0;
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

export class ZoneEditor {
  // onChange(shapes) after every edit; onRename(kind, old, new) so rules follow a renamed shape.
  constructor({ onChange = () => {}, onRename = () => {} } = {}) {
    this.onChange = onChange;
    this.onRename = onRename;
    this.shapes = []; // {kind: "zone"|"line", name, points: [[x, y]], open: bool}
    this.mode = "select"; // select | zone | line
    this.drawing = null; // the shape being drawn
    this.selected = null;
    this.drag = null; // {shape, index}
    this.directions = {}; // line name → both | left_to_right | right_to_left (its fence rule's)
    this.img = h("img", { class: "zone-picture", alt: "摄像机画面 camera picture" });
    this.canvas = h("canvas", { class: "zone-canvas", tabindex: "0" });
    this.note = h("p", { class: "zone-picture-state muted" });
    this.stage = h("div", { class: "zone-stage" }, this.img, this.canvas);
    this.modeButtons = {
      select: h("button", { type: "button", class: "zone-mode-select", onclick: () => this.setMode("select") }, "选择 Select"),
      zone: h("button", { type: "button", class: "zone-new-polygon", onclick: () => this.setMode("zone") }, "画区域 New zone"),
      line: h("button", { type: "button", class: "zone-new-line", onclick: () => this.setMode("line") }, "画线 New line"),
    };
    this.deleteButton = h("button", { type: "button", class: "zone-delete", onclick: () => this.deleteSelected() }, "删除 Delete");
    this.hint = h("span", { class: "muted zone-hint" });
    this.list = h("ul", { class: "zone-list" });
    this.el = h("div", { class: "zone-editor" },
      h("div", { class: "toolbar" }, Object.values(this.modeButtons), this.deleteButton, this.hint),
      this.stage, this.note, this.list);
    this.img.addEventListener("load", () => { this.stage.classList.remove("no-picture"); this.draw(); });
    this.img.addEventListener("error", () => this.stage.classList.add("no-picture"));
    this.canvas.addEventListener("mousedown", e => this.down(e));
    this.canvas.addEventListener("mousemove", e => this.move(e));
    this.release = () => this.up();
    window.addEventListener("mouseup", this.release);
    this.canvas.addEventListener("click", e => this.click(e));
    this.canvas.addEventListener("dblclick", e => this.dblclick(e));
    this.canvas.addEventListener("contextmenu", e => this.removeVertex(e));
    this.canvas.addEventListener("keydown", e => { if (e.key === "Delete" || e.key === "Backspace") this.deleteSelected(); });
    this.resize = () => this.draw();
    window.addEventListener("resize", this.resize);
    this.setMode("select");
  }

  // The picture: a URL (null → none, with ``why`` shown in its place).
  setPicture(url, why = "") {
    this.note.textContent = why;
    if (url) this.img.src = url;
    else { this.img.removeAttribute("src"); this.stage.classList.add("no-picture"); }
    this.draw();
  }

  load(zones = {}, lines = {}) {
    this.shapes = [
      ...Object.entries(zones).map(([name, pts]) => ({ kind: "zone", name, points: pts.map(p => [...p]), open: false })),
      ...Object.entries(lines).map(([name, pts]) => ({ kind: "line", name, points: pts.map(p => [...p]), open: false })),
    ];
    this.drawing = this.selected = null;
    this.setMode("select");
    this.render();
  }

  // What the analysis config stores: {zones: {name: [[x, y]...]}, lines: {...}}.
  value() {
    const out = { zones: {}, lines: {} };
    for (const s of this.shapes) {
      if (s.open) continue;
      (s.kind === "zone" ? out.zones : out.lines)[s.name] = s.points.map(([x, y]) => [round4(x), round4(y)]);
    }
    return out;
  }

  setDirections(directions) {
    this.directions = directions || {};
    this.draw();
  }

  names(kind) { return this.shapes.filter(s => s.kind === kind && !s.open).map(s => s.name); }

  setMode(mode) {
    if (this.drawing) this.abandon();
    this.mode = mode;
    for (const [k, b] of Object.entries(this.modeButtons)) b.classList.toggle("active", k === mode);
    this.canvas.dataset.mode = mode;
    this.hint.textContent = {
      select: "拖动顶点调整，右键删除顶点 drag a point to move it, right click removes it",
      zone: "单击添加顶点，双击闭合 click to add points, double click to close",
      line: "单击两点画线 click two points",
    }[mode];
    this.draw();
  }

  freeName(kind) {
    const base = kind === "zone" ? "区域" : "线";
    for (let i = 1; ; i++) if (!this.shapes.some(s => s.name === base + i)) return base + i;
  }

  pos(e) {
    const r = this.canvas.getBoundingClientRect();
    return [round4((e.clientX - r.left) / r.width), round4((e.clientY - r.top) / r.height)];
  }

  // The vertex under the pointer: {shape, index}, or null.
  vertexAt(e) {
    const r = this.canvas.getBoundingClientRect();
    const px = e.clientX - r.left, py = e.clientY - r.top;
    for (const shape of [...this.shapes].reverse()) {
      const index = shape.points.findIndex(([x, y]) => Math.hypot(x * r.width - px, y * r.height - py) <= HIT_PX);
      if (index >= 0) return { shape, index };
    }
    return null;
  }

  shapeAt(p) {
    const r = this.canvas.getBoundingClientRect();
    for (const s of [...this.shapes].reverse()) {
      if (s.open) continue;
      if (s.kind === "zone" && pointInPolygon(p, s.points)) return s;
      if (s.kind === "line") {
        const scaled = q => [q[0] * r.width, q[1] * r.height];
        if (segmentDistance(scaled(p), scaled(s.points[0]), scaled(s.points[1])) <= HIT_PX) return s;
      }
    }
    return null;
  }

  down(e) {
    if (this.mode !== "select" || e.button !== 0) return;
    const hit = this.vertexAt(e);
    if (hit) { this.drag = hit; this.selected = hit.shape; e.preventDefault(); this.render(); }
  }

  move(e) {
    if (!this.drag) return;
    this.drag.shape.points[this.drag.index] = this.pos(e);
    this.dragged = true;
    this.draw();
  }

  up() {
    if (!this.drag) return;
    this.drag = null;
    if (this.dragged) { this.dragged = false; this.suppressClick = true; this.changed(); }
  }

  click(e) {
    if (this.suppressClick) { this.suppressClick = false; return; }
    const p = this.pos(e);
    if (this.mode === "select") {
      this.selected = this.shapeAt(p);
      this.render();
      return;
    }
    if (!this.drawing) {
      this.drawing = { kind: this.mode, name: this.freeName(this.mode), points: [], open: true };
      this.shapes.push(this.drawing);
    }
    const pts = this.drawing.points, last = pts[pts.length - 1];
    const r = this.canvas.getBoundingClientRect();
    // the second click of a double click lands on the last point: it closes, it adds nothing
    if (last && Math.hypot((last[0] - p[0]) * r.width, (last[1] - p[1]) * r.height) < 4) return;
    pts.push(p);
    if (this.drawing.kind === "line" && pts.length === 2) this.finish();
    else this.draw();
  }

  dblclick(e) {
    e.preventDefault();
    if (!this.drawing || this.drawing.kind !== "zone") return;
    if (this.drawing.points.length >= 3) this.finish();
  }

  finish() {
    const shape = this.drawing;
    shape.open = false;
    this.drawing = null;
    this.selected = shape;
    this.setMode("select");
    this.changed();
  }

  abandon() {
    this.shapes = this.shapes.filter(s => s !== this.drawing);
    this.drawing = null;
  }

  removeVertex(e) {
    e.preventDefault();
    const hit = this.vertexAt(e);
    if (!hit) return;
    const min = hit.shape.kind === "zone" ? 3 : 2;
    if (hit.shape.points.length > min) { hit.shape.points.splice(hit.index, 1); this.changed(); }
  }

  deleteSelected() {
    if (!this.selected) return;
    this.shapes = this.shapes.filter(s => s !== this.selected);
    this.selected = null;
    this.changed();
  }

  rename(shape, name) {
    name = name.trim();
    if (!name || this.shapes.some(s => s !== shape && s.kind === shape.kind && s.name === name)) return false;
    const old = shape.name;
    shape.name = name;
    this.onRename(shape.kind, old, name);
    this.changed();
    return true;
  }

  changed() {
    this.render();
    this.onChange(this.value());
  }

  render() {
    this.deleteButton.disabled = !this.selected;
    this.list.replaceChildren(...this.shapes.filter(s => !s.open).map(s => {
      const input = h("input", { class: "zone-name", value: s.name, "aria-label": "名称 name", size: 10 });
      input.addEventListener("change", () => { if (!this.rename(s, input.value)) input.value = s.name; });
      return h("li", { "data-shape": s.name, "data-kind": s.kind, class: s === this.selected ? "selected" : "",
        onclick: () => { this.selected = s; this.render(); } },
      h("span", { class: "zone-kind" }, s.kind === "zone" ? "区域 zone" : "线 line"), " ", input,
      h("span", { class: "muted" }, ` ${s.points.length} 点 points`));
    }));
    this.draw();
  }

  draw() {
    const c = this.canvas, w = c.clientWidth, hgt = c.clientHeight;
    if (!w || !hgt) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    g.font = "13px system-ui, 'Noto Sans CJK SC', sans-serif";
    for (const s of this.shapes) {
      const color = s === this.selected ? COLORS.selected : COLORS[s.kind];
      const pts = s.points.map(([x, y]) => [x * w, y * hgt]);
      if (!pts.length) continue;
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      pts.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
      if (s.kind === "zone" && !s.open) {
        g.closePath();
        g.fillStyle = color + "40";
        g.fill();
      }
      g.stroke();
      if (s.kind === "line" && pts.length >= 2) this.lineMarks(g, s, pts, color);
      g.fillStyle = color;
      for (const [x, y] of pts) { g.beginPath(); g.arc(x, y, 4, 0, 2 * Math.PI); g.fill(); }
      if (!s.open) {
        g.fillStyle = "#fff";
        g.fillText(s.name, pts[0][0] + 6, pts[0][1] - 6);
      }
    }
  }

  // A line's ends (A, B) and, where a fence rule uses it, the crossing that alarms: an arrow
  // across its first segment from the side that counts (both heads: either way).
  lineMarks(g, s, pts, color) {
    const [[x1, y1], [x2, y2]] = pts;
    g.fillStyle = "#fff";
    g.fillText("A", x1 - 14, y1 + 14);
    g.fillText("B", pts[pts.length - 1][0] + 6, pts[pts.length - 1][1] + 14);
    const dir = this.directions[s.name];
    if (!dir) return;
    const len = Math.hypot(x2 - x1, y2 - y1) || 1;
    // on screen (y down) the left of A→B is (dy, -dx)
    const lx = (y2 - y1) / len, ly = -(x2 - x1) / len, mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
    const sense = dir === "right_to_left" ? -1 : 1; // +1: from the left side to the right
    const from = [mx + 22 * lx * sense, my + 22 * ly * sense], to = [mx - 22 * lx * sense, my - 22 * ly * sense];
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath(); g.moveTo(...from); g.lineTo(...to); g.stroke();
    this.head(g, from, to, color);
    if (dir === "both") this.head(g, to, from, color);
  }

  head(g, [fx, fy], [tx, ty], color) {
    const a = Math.atan2(ty - fy, tx - fx);
    g.fillStyle = color;
    g.beginPath();
    g.moveTo(tx, ty);
    g.lineTo(tx - 9 * Math.cos(a - 0.45), ty - 9 * Math.sin(a - 0.45));
    g.lineTo(tx - 9 * Math.cos(a + 0.45), ty - 9 * Math.sin(a + 0.45));
    g.fill();
  }

  dispose() {
    window.removeEventListener("resize", this.resize);
    window.removeEventListener("mouseup", this.release);
  }
}
