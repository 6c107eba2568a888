// Device tree: organisation → device (online status) → cameras, with live and replay shortcuts.
import { fmtTime, h } from "./api.js";
import { cameraKey, invalidate, loadCatalog } from "./catalog.js";

const KIND = {
  province: "省 Province", city: "市 City", county: "县区 County", park: "园区 Park",
  enterprise: "企业 Enterprise", gas_station: "加油站 Gas station",
};

export function orgTree(orgs) {
  const byId = new Map(orgs.map(o => [o.id, { ...o, children: [] }]));
  const roots = [];
  for (const o of byId.values()) {
    const parent = byId.get(o.parent_id);
    (parent ? parent.children : roots).push(o);
  }
  return roots;
}

export async function renderDevices(root, actions) {
  root.replaceChildren(h("p", { class: "muted" }, "加载中… loading"));
  invalidate();
  const catalog = await loadCatalog();
  const byOrg = new Map();
  for (const d of catalog.devices) {
    const key = catalog.orgs.some(o => o.id === d.org_id) ? d.org_id : null;
    if (!byOrg.has(key)) byOrg.set(key, []);
    byOrg.get(key).push(d);
  }
  const online = catalog.devices.filter(d => d.online).length;
  const summary = h("p", { class: "summary" },
    `设备 devices: ${catalog.devices.length} · 在线 online: ${online} · 摄像机 cameras: ${catalog.channels.size}`);

  function deviceNode(d) {
    const chans = h("ul", { class: "channels" }, d.channels.map(c => h("li", { class: "channel", "data-channel": c.channel_id },
      h("span", { class: "cam" }, "📷 "),
      h("span", { class: "name" }, c.name || c.channel_id), " ",
      h("code", {}, c.channel_id), " ",
      h("button", { class: "small", title: "实时 Live", onclick: () => actions.live(cameraKey(d.device_id, c.channel_id)) }, "▶ 实时 Live"), " ",
      h("button", { class: "small", title: "回放 Replay", onclick: () => actions.replay(cameraKey(d.device_id, c.channel_id)) }, "⏪ 回放 Replay"))));
    const status = d.online ? "online" : "offline";
    return h("li", { class: "device", "data-device": d.device_id },
      h("details", { open: true },
        h("summary", {},
          h("span", { class: `dot ${status}`, title: status }), " ",
          h("strong", {}, d.name || d.device_id), " ",
          h("code", {}, d.device_id), " ",
          h("span", { class: status }, d.online ? "在线 online" : "离线 offline"), " ",
          h("span", { class: "muted" }, [d.manufacturer, d.model].filter(Boolean).join(" "),
            d.keepalive_at ? ` · 心跳 keepalive ${fmtTime(d.keepalive_at)}` : "")),
        d.channels.length ? chans : h("p", { class: "muted" }, "无通道 no channels")));
  }

  function orgNode(o) {
    const devices = byOrg.get(o.id) || [];
    const up = devices.filter(d => d.online).length;
    return h("li", { class: "org", "data-org": o.id },
      h("details", { open: true },
        h("summary", {}, h("strong", {}, o.name), " ", h("span", { class: "kind" }, KIND[o.kind] || o.kind),
          devices.length ? h("span", { class: "muted" }, ` ${up}/${devices.length} 在线 online`) : ""),
        h("ul", {}, devices.map(deviceNode), o.children.map(orgNode))));
  }

  const tree = h("ul", { class: "tree", id: "device-tree" }, orgTree(catalog.orgs).map(orgNode));
  const unassigned = byOrg.get(null) || [];
  if (unassigned.length) {
    tree.append(h("li", { class: "org" }, h("details", { open: true },
      h("summary", {}, h("strong", {}, "未分配 Unassigned")), h("ul", {}, unassigned.map(deviceNode)))));
  }
  const search = h("input", { type: "search", class: "search", placeholder: "搜索 名称/编码 search name or id", "aria-label": "搜索 search" });
  search.addEventListener("input", () => filterTree(tree, search.value.trim().toLowerCase()));
  root.replaceChildren(h("div", { class: "toolbar" }, search, summary),
    catalog.devices.length || catalog.orgs.length ? tree : h("p", {}, "暂无设备 no devices"));
}


// Hide cameras and devices that do not match; a matching device shows all its cameras.
function filterTree(tree, q) {
  for (const dev of tree.querySelectorAll("li.device")) {
    const devHit = !q || dev.querySelector("summary").textContent.toLowerCase().includes(q);
    let any = false;
    for (const ch of dev.querySelectorAll("li.channel")) {
      const hit = devHit || ch.textContent.toLowerCase().includes(q);
      ch.hidden = !hit;
      any ||= hit;
    }
    dev.hidden = !(devHit || any);
  }
}
