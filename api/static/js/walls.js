// Named walls saved per user on the server (/api/walls), and the channel tree the live wall
// takes its cameras from: organisation → enterprise → device → camera, dragged onto a tile.
import { api, h } from "./api.js";
import { cameraKey } from "./catalog.js";
import { orgTree } from "./devices.js";

export const DRAG_TYPE = "application/x-vms-camera";

const wallPath = name => `/api/walls/${encodeURIComponent(name)}`;

export const walls = {
  list: () => api("/api/walls"),
  get: name => api(wallPath(name)),
  save: (name, wall) => api(wallPath(name), { method: "PUT", body: JSON.stringify(wall) }),
  remove: name => api(wallPath(name), { method: "DELETE" }),
};

// The tree: a camera drags onto a tile (or double click: onto the wall), its box selects it
// for "tour selected" (onTour gets the keys in tree order).
export function channelTree(catalog, { onShow, onTour }) {
  const byOrg = new Map();
  for (const d of catalog.devices) {
    const key = catalog.orgs.some(o => o.id === d.org_id) ? d.org_id : null;
    if (!byOrg.has(key)) byOrg.set(key, []);
    byOrg.get(key).push(d);
  }
  const filter = h("input", { type: "search", class: "tree-filter", placeholder: "筛选 filter", "aria-label": "筛选 filter",
    oninput: () => applyFilter() });
  const tourSelected = h("button", { class: "small", id: "tour-selected", title: "所选摄像机轮巡 tour the ticked cameras",
    onclick: () => onTour([...list.querySelectorAll("li.tree-cam input:checked")].map(i => i.closest("li").dataset.camera)) },
  "轮巡所选 Tour selected");

  function camNode(d, c) {
    const key = cameraKey(d.device_id, c.channel_id);
    return h("li", {
      class: "tree-cam", draggable: "true", "data-camera": key, "data-i18n-keep": "title", title: `${c.name || c.channel_id} (${c.channel_id}) — 拖到画面 drag onto a tile`,
      ondragstart: ev => {
        ev.dataTransfer.setData(DRAG_TYPE, key);
        ev.dataTransfer.setData("text/plain", key);
        ev.dataTransfer.effectAllowed = "copy";
      },
      ondblclick: () => onShow(key),
    }, h("input", { type: "checkbox", "aria-label": "选择 select" }), " ",
    h("span", { class: `dot ${d.online ? "online" : "offline"}` }), " ", h("span", { "data-i18n": "off" }, c.name || c.channel_id));
  }

  function deviceNode(d) {
    return h("li", { class: "tree-device", "data-device": d.device_id },
      h("details", { open: true }, h("summary", {}, h("span", { class: `dot ${d.online ? "online" : "offline"}` }), " ", h("span", { "data-i18n": "off" }, d.name || d.device_id)),
        h("ul", {}, d.channels.map(c => camNode(d, c)))));
  }

  function orgNode(o) {
    const kids = [...o.children.map(orgNode), ...(byOrg.get(o.id) || []).map(deviceNode)];
    return h("li", { class: "tree-org", "data-org": o.id },
      h("details", { open: true }, h("summary", {}, h("span", { "data-i18n": "off" }, o.name)), h("ul", {}, kids)));
  }

  const roots = orgTree(catalog.orgs).map(orgNode);
  if (byOrg.has(null)) roots.push(h("li", { class: "tree-org" }, h("details", { open: true },
    h("summary", {}, "未分配 Unassigned"), h("ul", {}, byOrg.get(null).map(deviceNode)))));
  const list = h("ul", { class: "tree-root" }, roots);

  function applyFilter() {
    const q = filter.value.trim().toLowerCase();
    for (const li of list.querySelectorAll("li.tree-cam")) {
      li.hidden = !!q && !(li.textContent.toLowerCase().includes(q) || li.dataset.camera.includes(q));
    }
    for (const li of [...list.querySelectorAll("li.tree-device, li.tree-org")].reverse()) {
      li.hidden = !!q && !li.querySelector("li.tree-cam:not([hidden])");
    }
  }

  return h("aside", { class: "channel-tree", id: "channel-tree" },
    h("div", { class: "tree-tools" }, filter, tourSelected),
    catalog.channels.size ? list : h("p", { class: "muted" }, "无摄像机 no cameras"));
}
