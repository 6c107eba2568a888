// Map: the caller's cameras, sensor points, installations and active alarms by their WGS-84
// position.  With a tile URL set on the server (server.map_tile_url) a Leaflet slippy map
// (vendored, loaded on demand); without one (the default, a closed network) the points are
// drawn on a plain SVG plane scaled to their bounding box, with a grid, axes and a scale bar.
// Alarms blink; a camera opens live, an alarm or a sensor shows its detail beside the map.
import { api, fmtTime, h } from "./api.js";
import { imageUrl, typeName } from "./alarms.js";
import { INSTALLATION_KINDS, KINDS, levelChip } from "./levels.js";

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 560;
const MARGIN = 56; // room for the axis labels
const M_PER_DEG = 111320; // metres per degree of latitude (and of longitude at the equator)
const MIN_SPAN_DEG = 0.002; // ~200 m: one point alone still gets a readable plane
const REFRESH_MS = 15000;
const HANDLING = { new: "待确认 new", acknowledged: "已确认 acknowledged", handled: "已处置 handled" };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null && v !== false) el.setAttribute(k, v);
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

const located = x => x.longitude != null && x.latitude != null;

// 1, 2 or 5 times a power of ten, near `x`.
function nice(x) {
  const p = 10 ** Math.floor(Math.log10(x));
  const f = x / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

function fmtDeg(v, step, pos, neg) {
  const digits = Math.max(0, Math.ceil(-Math.log10(step)));
  return `${Math.abs(v).toFixed(digits)}°${v >= 0 ? pos : neg}`;
}

let leafletLoading = null;
function loadLeaflet() {
  if (window.L) return Promise.resolve(window.L);
  leafletLoading ||= new Promise((resolve, reject) => {
    document.head.append(h("link", { rel: "stylesheet", href: "/static/vendor/leaflet.css" }));
    const s = document.createElement("script");
    s.src = "/static/vendor/leaflet.js";
    s.onload = () => resolve(window.L);
    s.onerror = () => { leafletLoading = null; reject(new Error("leaflet failed to load")); };
    document.head.append(s);
  });
  return leafletLoading;
}

export class MapView {
  constructor(actions) {
    this.actions = actions;
    this.data = null;
    this.timer = null;
    this.leaflet = null; // { map, layer } once tiles are on
    this.show = { cameras: true, sensors: true, alarms: true };
    this.stage = h("div", { class: "map-stage", id: "map-stage" });
    this.detail = h("div", { class: "map-detail", id: "map-detail" }, h("p", { class: "muted" }, "点击标记查看 click a marker"));
    this.unplaced = h("div", { class: "map-unplaced", id: "map-unplaced" });
    this.info = h("p", { class: "muted", id: "map-info" });
    const toggle = (key, label) => h("label", {},
      h("input", { type: "checkbox", checked: true, "data-layer": key, onchange: e => { this.show[key] = e.target.checked; this.render(); } }), " ", label);
    this.el = h("div", { class: "map-view" },
      h("div", { class: "toolbar" },
        toggle("cameras", "摄像机 Cameras"), " ", toggle("sensors", "传感器 Sensors"), " ", toggle("alarms", "报警 Alarms"), " ",
        h("button", { onclick: () => this.refresh() }, "刷新 Refresh"),
        h("span", { class: "map-legend muted" },
          h("span", { class: "legend-camera" }, "●"), " 摄像机 camera ",
          h("span", { class: "legend-sensor" }, "◆"), " 传感器 sensor ",
          h("span", { class: "legend-installation" }, "□"), " 装置 installation ",
          h("span", { class: "legend-alarm" }, "○"), " 报警 alarm")),
      this.info,
      h("div", { class: "map-body" }, this.stage, h("aside", { class: "map-side" }, this.detail, this.unplaced)));
    this.resize = new ResizeObserver(() => { if (!this.leaflet && this.data) this.render(); });
  }

  async mount(root) {
    root.replaceChildren(this.el);
    this.resize.observe(this.stage);
    await this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh().catch(() => {}), REFRESH_MS);
  }

  unmount() {
    clearInterval(this.timer);
    this.timer = null;
    this.resize.disconnect();
  }

  // An alarm was raised or changed: the markers follow at once rather than at the next poll.
  onAlarm() {
    clearTimeout(this.soon);
    this.soon = setTimeout(() => this.refresh().catch(() => {}), 300);
  }

  async refresh() {
    try { this.data = await api("/api/map"); }
    catch (e) { this.info.textContent = `地图数据失败 map data failed: ${e.message}`; return; }
    await this.render();
  }

  // Active alarms grouped by camera: one blinking ring per place.
  alarmGroups() {
    const groups = new Map();
    for (const a of this.data.alarms) {
      if (!located(a)) continue;
      const k = `${a.longitude},${a.latitude},${a.camera}`;
      if (!groups.has(k)) groups.set(k, { longitude: a.longitude, latitude: a.latitude, camera: a.camera, alarms: [] });
      groups.get(k).alarms.push(a);
    }
    return [...groups.values()];
  }

  items() {
    const d = this.data;
    return {
      cameras: this.show.cameras ? d.cameras.filter(located) : [],
      sensors: this.show.sensors ? d.sensors.filter(located) : [],
      installations: this.show.sensors ? d.installations.filter(located) : [],
      alarms: this.show.alarms ? this.alarmGroups() : [],
    };
  }

  async render() {
    const d = this.data;
    if (!d) return;
    const placed = d.cameras.filter(located).length;
    this.info.textContent = `摄像机 cameras ${placed}/${d.cameras.length} 已定位 placed · 传感器 sensors ${d.sensors.filter(located).length}/${d.sensors.length}` +
      ` · 报警中 active alarms ${d.alarms.length}` + (d.tile_url ? "" : " · 无底图 no tiles (server.map_tile_url)");
    this.renderUnplaced();
    if (d.tile_url) {
      try { await this.renderLeaflet(); return; }
      catch (e) { this.info.textContent += ` · 底图失败 tiles failed: ${e.message}`; }
    }
    this.renderPlane();
  }

  renderUnplaced() {
    const d = this.data;
    const cams = d.cameras.filter(c => !located(c));
    const sensors = d.sensors.filter(s => !located(s));
    const alarms = d.alarms.filter(a => !located(a));
    const list = (title, rows) => rows.length ? [h("h4", {}, title), h("ul", {}, rows)] : [];
    this.unplaced.replaceChildren(
      h("h3", {}, "未定位 no position"),
      ...list("摄像机 Cameras", cams.map(c => h("li", { "data-key": c.key },
        h("a", { href: "#live", onclick: ev => { ev.preventDefault(); this.actions.live(c.key); } }, c.name || c.channel_id),
        " ", h("code", {}, c.channel_id)))),
      ...list("传感器 Sensors", sensors.map(s => h("li", { "data-sensor": s.id }, `${s.tag} ${s.name}`))),
      ...list("报警 Alarms", alarms.map(a => h("li", { "data-alarm": a.alarm_id },
        h("a", { href: "#alarms", onclick: ev => { ev.preventDefault(); this.showAlarms([a]); } }, `${typeName(a)} ${fmtTime(a.raised_at)}`)))),
      cams.length + sensors.length + alarms.length ? "" : h("p", { class: "muted" }, "全部已定位 everything is placed"));
  }

  // --- without tiles: a plane scaled to the points -------------------------------------------

  renderPlane() {
    if (this.leaflet) { this.leaflet.map.remove(); this.leaflet = null; }
    const it = this.items();
    const all = [...it.cameras, ...it.sensors, ...it.installations, ...it.alarms];
    const W = Math.max(this.stage.clientWidth || 900, 320), H = HEIGHT;
    const root = svg("svg", { class: "map-plane", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "地图 map" });
    this.stage.replaceChildren(root);
    if (!all.length) {
      root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "map-empty" }, "无已定位对象 nothing with a position"));
      return;
    }
    let minLon = Math.min(...all.map(p => p.longitude)), maxLon = Math.max(...all.map(p => p.longitude));
    let minLat = Math.min(...all.map(p => p.latitude)), maxLat = Math.max(...all.map(p => p.latitude));
    const midLat = (minLat + maxLat) / 2;
    const kx = Math.max(Math.cos((midLat * Math.PI) / 180), 0.05); // a degree of longitude, shrunk
    const padLat = Math.max((maxLat - minLat) * 0.1, MIN_SPAN_DEG / 2), padLon = Math.max((maxLon - minLon) * 0.1, MIN_SPAN_DEG / 2 / kx);
    minLon -= padLon; maxLon += padLon; minLat -= padLat; maxLat += padLat;
    const s = Math.min((W - 2 * MARGIN) / ((maxLon - minLon) * kx), (H - 2 * MARGIN) / (maxLat - minLat)); // px per degree of latitude
    const cx = W / 2, cy = H / 2, lon0 = (minLon + maxLon) / 2, lat0 = (minLat + maxLat) / 2;
    const X = lon => cx + (lon - lon0) * kx * s, Y = lat => cy - (lat - lat0) * s;
    const lonAt = x => lon0 + (x - cx) / (kx * s), latAt = y => lat0 - (y - cy) / s;
    this.plane = { X, Y, lonAt, latAt }; // for tests and the detail panel
    root.dataset.scale = String(s);

    // Grid and axes: graticule lines at a round step, labelled in degrees.
    const grid = svg("g", { class: "map-grid" });
    const x0 = MARGIN / 2, x1 = W - MARGIN / 4, y0 = MARGIN / 4, y1 = H - MARGIN / 2;
    const lonStep = nice((lonAt(x1) - lonAt(x0)) / 6), latStep = nice((latAt(y0) - latAt(y1)) / 5);
    for (let lon = Math.ceil(lonAt(x0) / lonStep) * lonStep; lon <= lonAt(x1); lon += lonStep) {
      grid.append(svg("line", { x1: X(lon), x2: X(lon), y1: y0, y2: y1 }),
        svg("text", { x: X(lon), y: y1 + 14, "text-anchor": "middle", class: "map-axis" }, fmtDeg(lon, lonStep, "E", "W")));
    }
    for (let lat = Math.ceil(latAt(y1) / latStep) * latStep; lat <= latAt(y0); lat += latStep) {
      grid.append(svg("line", { x1: x0, x2: x1, y1: Y(lat), y2: Y(lat) }),
        svg("text", { x: x0 + 2, y: Y(lat) - 3, class: "map-axis" }, fmtDeg(lat, latStep, "N", "S")));
    }
    root.append(grid);

    // Scale bar: a round length near a fifth of the width, bottom right.
    const pxPerM = s / M_PER_DEG;
    const metres = nice((W / 5) / pxPerM), len = metres * pxPerM;
    const bx = W - MARGIN / 2 - len, by = H - MARGIN / 2 - 16;
    root.append(svg("g", { class: "map-scale", "data-metres": metres },
      svg("path", { d: `M${bx} ${by - 5}V${by}H${bx + len}V${by - 5}` }),
      svg("text", { x: bx + len / 2, y: by - 8, "text-anchor": "middle" }, metres >= 1000 ? `${metres / 1000} km` : `${metres} m`)));
    root.append(svg("text", { x: W - 8, y: 16, "text-anchor": "end", class: "map-axis" }, "N ↑ WGS-84"));

    const layer = svg("g", { class: "map-points" });
    for (const i of it.installations) {
      const g = svg("g", { class: "map-installation", "data-installation": i.id, transform: `translate(${X(i.longitude)},${Y(i.latitude)})` },
        svg("rect", { x: -9, y: -9, width: 18, height: 18 }), svg("title", {}, `${i.name} ${INSTALLATION_KINDS[i.kind] || i.kind}`));
      layer.append(g);
    }
    for (const p of it.sensors) {
      const g = svg("g", { class: "map-sensor", "data-sensor": p.id, "data-level": p.level || "none", transform: `translate(${X(p.longitude)},${Y(p.latitude)})` },
        svg("path", { d: "M0 -7L7 0L0 7L-7 0Z" }), svg("title", {}, `${p.tag} ${p.name}`));
      g.addEventListener("click", () => this.showSensor(p));
      layer.append(g);
    }
    for (const c of it.cameras) {
      const g = svg("g", { class: `map-camera ${c.online ? "online" : "offline"}`, "data-key": c.key, transform: `translate(${X(c.longitude)},${Y(c.latitude)})` },
        svg("circle", { r: 7 }), svg("text", { x: 10, y: 4, class: "map-label" }, c.name || c.channel_id),
        svg("title", {}, `${c.name || c.channel_id} — 点击实时 click for live`));
      g.addEventListener("click", () => this.actions.live(c.key));
      layer.append(g);
    }
    for (const a of it.alarms) {
      const g = svg("g", { class: "map-alarm blink", "data-alarms": a.alarms.map(x => x.alarm_id).join(" "), "data-camera": a.camera,
        transform: `translate(${X(a.longitude)},${Y(a.latitude)})` },
        svg("circle", { r: 15 }), a.alarms.length > 1 ? svg("text", { x: 13, y: -11, class: "map-count" }, a.alarms.length) : null,
        svg("title", {}, a.alarms.map(x => `${typeName(x)} ${fmtTime(x.raised_at)}`).join("\n")));
      g.addEventListener("click", () => this.showAlarms(a.alarms));
      layer.append(g);
    }
    root.append(layer);
  }

  // --- with tiles: Leaflet ---------------------------------------------------------------------

  async renderLeaflet() {
    const L = await loadLeaflet();
    if (!this.leaflet) {
      const box = h("div", { class: "map-leaflet", style: `height:${HEIGHT}px` });
      this.stage.replaceChildren(box);
      const map = L.map(box, { attributionControl: true });
      const text = document.createElement("span");
      text.textContent = this.data.tile_attribution || ""; // shown as text, never as HTML
      L.tileLayer(this.data.tile_url, { maxZoom: 19, attribution: text.innerHTML }).addTo(map);
      this.leaflet = { map, layer: L.layerGroup().addTo(map), fitted: false };
    }
    const { map, layer } = this.leaflet;
    layer.clearLayers();
    const it = this.items();
    const text = v => String(v).replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);
    const attr = (k, v) => `${k}="${text(v)}"`;
    const icon = (cls, attrs, label) => L.divIcon({ className: "map-icon", iconSize: null,
      html: `<span class="${cls}" ${attrs}></span>${label ? `<span class="map-dot-label">${text(label)}</span>` : ""}` });
    const add = (p, cls, attrs, title, onClick, label = "") => {
      const m = L.marker([p.latitude, p.longitude], { icon: icon(cls, attrs, label), title, riseOnHover: true });
      m.on("click", onClick);
      layer.addLayer(m);
    };
    for (const i of it.installations) add(i, "map-dot map-installation", attr("data-installation", i.id), i.name, () => {});
    for (const p of it.sensors) add(p, "map-dot map-sensor", `${attr("data-sensor", p.id)} ${attr("data-level", p.level || "none")}`, `${p.tag} ${p.name}`, () => this.showSensor(p));
    for (const c of it.cameras) add(c, `map-dot map-camera ${c.online ? "online" : "offline"}`, attr("data-key", c.key), c.name || c.channel_id, () => this.actions.live(c.key), c.name || c.channel_id);
    for (const a of it.alarms) add(a, "map-dot map-alarm blink", attr("data-alarms", a.alarms.map(x => x.alarm_id).join(" ")), a.alarms.map(x => typeName(x)).join(", "), () => this.showAlarms(a.alarms));
    const pts = [...it.cameras, ...it.sensors, ...it.installations].map(p => [p.latitude, p.longitude]);
    if (!this.leaflet.fitted) {
      if (pts.length) map.fitBounds(L.latLngBounds(pts).pad(0.2), { maxZoom: 17 });
      else map.setView([35, 105], 4); // China, until something has a position
      this.leaflet.fitted = true;
    }
    setTimeout(() => map.invalidateSize(), 0);
  }

  // --- the side panel ---------------------------------------------------------------------------

  showAlarms(alarms) {
    this.detail.replaceChildren(h("h3", {}, "报警 Alarms"), ...alarms.map(a => {
      const img = h("img", { class: "thumb", alt: "抓拍 snapshot", src: imageUrl(a) });
      img.addEventListener("error", () => img.replaceWith(h("span", { class: "muted" }, "无图 no image")));
      const buttons = [];
      if (a.camera) {
        buttons.push(h("button", { class: "small map-open-live", onclick: () => this.actions.live(a.camera) }, "实时 Live"),
          h("button", { class: "small map-open-replay", onclick: () => this.actions.replay(a.camera, a.raised_at) }, "回放 Replay"));
      }
      buttons.push(h("button", { class: "small map-open-alarms", onclick: () => this.actions.openRef("video", a.alarm_id) }, "报警列表 Alarm list"));
      return h("div", { class: "map-card", "data-alarm": a.alarm_id }, img,
        h("div", {}, h("strong", {}, typeName(a)), " ", h("span", { class: "alarm-on" }, "报警中 active")),
        h("div", { class: "muted" }, fmtTime(a.raised_at), " · ", HANDLING[a.handling] || a.handling),
        h("div", {}, h("code", {}, a.video_code)), h("div", { class: "toolbar" }, buttons));
    }));
  }

  showSensor(p) {
    this.detail.replaceChildren(h("h3", {}, "传感器 Sensor"), h("div", { class: "map-card", "data-sensor": p.id },
      h("div", {}, h("strong", {}, p.tag), " ", p.name),
      h("div", { class: "muted" }, KINDS[p.kind] || p.kind, " · ", p.online ? "在线 online" : "离线 offline"),
      h("div", {}, levelChip(p.level)),
      p.from_installation ? h("div", { class: "muted" }, "位置取自装置 placed at its installation") : "",
      h("div", { class: "toolbar" }, h("button", { class: "small", onclick: () => this.actions.view("sensors") }, "传感器页 Sensors"))));
  }
}
