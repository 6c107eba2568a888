// Device tree: organisation → device (online status, registration, transport, keepalive, a
// catalog refresh) → cameras, with live and replay shortcuts.
import { api, fmtTime, h } from "./api.js";
import { errorText } from "./admin_common.js";
import { cameraKey, invalidate, loadCatalog } from "./catalog.js";

// A device's admission (``status``): only an active one may register.
const ADMISSION = { active: "已接入 admitted", pending: "待审核 pending approval", disabled: "已停用 disabled" };

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

  function channelList(d) {
    return h("ul", { class: "channels" }, d.channels.map(c => h("li", { class: "channel", "data-channel": c.channel_id },
      h("span", { class: "cam" }, "■ "),
      h("span", { class: "name", "data-i18n": "off" }, c.name || c.channel_id), " ",
      h("code", {}, c.channel_id), " ",
      h("button", { class: "small", title: "实时 Live", onclick: () => actions.live(cameraKey(d.device_id, c.channel_id)) }, "▶ 实时 Live"), " ",
      h("button", { class: "small", title: "回放 Replay", onclick: () => actions.replay(cameraKey(d.device_id, c.channel_id)) }, "◀ 回放 Replay"))));
  }

  function deviceNode(d) {
    let chans = d.channels.length ? channelList(d) : h("p", { class: "muted" }, "无通道 no channels");
    const result = h("span", { class: "catalog-result", role: "status" });
    const refresh = h("button", { class: "small catalog-refresh", title: "向设备查询目录 Catalog query to the device" }, "刷新目录 Refresh catalog");
    refresh.addEventListener("click", async () => {
      refresh.disabled = true;
      result.dataset.ok = "";
      result.textContent = "查询中… querying";
      try {
        const got = await api(`/api/sip/devices/${encodeURIComponent(d.device_id)}/catalog`, { method: "POST" });
        result.dataset.ok = "1";
        result.textContent = `目录已刷新 catalog refreshed: ${got.channels} 通道 channels` +
          (got.sum_num != null ? ` (SumNum ${got.sum_num})` : "") + (got.complete ? "" : " · 不完整 incomplete");
        invalidate(); // other views see the new channels
        d.channels = await api(`/api/devices/${encodeURIComponent(d.device_id)}/channels`);
        const fresh = d.channels.length ? channelList(d) : h("p", { class: "muted" }, "无通道 no channels");
        chans.replaceWith(fresh);
        chans = fresh;
      } catch (e) {
        result.dataset.ok = "0";
        result.textContent = `刷新失败 refresh failed: ${errorText(e)}`;
      } finally { refresh.disabled = false; }
    });
    const transport = String(d.transport || "").toUpperCase();
    const meta = h("div", { class: "device-meta" },
      h("span", { class: "device-admission", "data-status": d.status }, ADMISSION[d.status] || d.status),
      h("span", { class: "device-registered" }, d.registered_at ? `注册 registered ${fmtTime(d.registered_at)}` : "未注册 never registered"),
      h("span", { class: "device-transport" }, transport ? `传输 transport ${transport}${d.remote_host ? ` ${d.remote_host}:${d.remote_port}` : ""}` : ""),
      h("span", { class: "device-keepalive" }, d.keepalive_at ? `心跳 keepalive ${fmtTime(d.keepalive_at)}` : "无心跳 no keepalive"),
      refresh, result);
    const status = d.online ? "online" : "offline";
    return h("li", { class: "device", "data-device": d.device_id },
      h("details", { open: true },
        h("summary", {},
          h("span", { class: `dot ${status}`, title: status }), " ",
          h("strong", { "data-i18n": "off" }, d.name || d.device_id), " ",
          h("code", {}, d.device_id), " ",
          h("span", { class: status }, d.online ? "在线 online" : "离线 offline"), " ",
          h("span", { class: "muted", "data-i18n": "off" }, [d.manufacturer, d.model].filter(Boolean).join(" "))),
        meta, chans));
  }

  function orgNode(o) {
    const devices = byOrg.get(o.id) || [];
    const up = devices.filter(d => d.online).length;
    return h("li", { class: "org", "data-org": o.id },
      h("details", { open: true },
        h("summary", {}, h("strong", { "data-i18n": "off" }, o.name), " ", h("span", { class: "kind" }, KIND[o.kind] || o.kind),
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
