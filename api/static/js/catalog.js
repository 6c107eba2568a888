// What the caller may see: organisations, devices and their cameras, loaded once and cached.
import { api } from "./api.js";

let cache = null;

export function invalidate() { cache = null; }

export function cachedCatalog() { return cache; }

async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() { while (next < items.length) { const i = next++; out[i] = await fn(items[i]); } }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// A camera is its device and its channel: the key "device/channel" names it in every view,
// since two devices may list the same channel ID.  A bare channel ID (an older saved wall, a
// push that names the code only) is resolved through the catalog when one device alone has it.
export function cameraKey(deviceId, channelId) {
  if (!channelId) return "";
  return deviceId ? `${deviceId}/${channelId}` : channelId;
}

export function parseKey(key) {
  const i = (key || "").indexOf("/");
  return i < 0 ? { deviceId: "", channelId: key || "" } : { deviceId: key.slice(0, i), channelId: key.slice(i + 1) };
}

// The camera's URL path part (its channel ID) and the query naming its device.
export function cameraPath(key) { return encodeURIComponent(parseKey(key).channelId); }

export function withDevice(url, key) {
  const { deviceId } = parseKey(key);
  if (!deviceId) return url;
  return `${url}${url.includes("?") ? "&" : "?"}device_id=${encodeURIComponent(deviceId)}`;
}

// The camera in a request body: channel_id, and device_id when the key names the device.
export function cameraBody(key) {
  const { deviceId, channelId } = parseKey(key);
  return deviceId ? { channel_id: channelId, device_id: deviceId } : { channel_id: channelId };
}

// The key of a camera named by its channel ID (and device, when known).
export function keyOf(catalog, channelId, deviceId = "") {
  if (deviceId || !channelId || channelId.includes("/")) return cameraKey(deviceId, channelId);
  const keys = catalog ? catalog.byChannel.get(channelId) || [] : [];
  return keys.length === 1 ? keys[0] : channelId;
}

export async function loadCatalog() {
  if (cache) return cache;
  const [orgs, devices] = await Promise.all([api("/api/orgs"), api("/api/devices")]);
  const channels = new Map();
  const byChannel = new Map();
  await mapLimit(devices, 6, async d => {
    d.channels = await api(`/api/devices/${d.device_id}/channels`).catch(() => []);
    for (const c of d.channels) {
      const key = cameraKey(d.device_id, c.channel_id);
      channels.set(key, { ...c, device: d, key });
      byChannel.set(c.channel_id, [...(byChannel.get(c.channel_id) || []), key]);
    }
  });
  cache = { orgs, devices, channels, byChannel };
  return cache;
}

export function cameraLabel(catalog, key) {
  const c = catalog && catalog.channels.get(keyOf(catalog, key));
  const { channelId } = parseKey(key);
  return c ? `${c.name || channelId}` : channelId;
}

export function cameraOptions(catalog, selected) {
  const opts = [`<option value="">— 选择摄像机 choose camera —</option>`];
  for (const [key, c] of catalog.channels) {
    const on = c.device.online ? "●" : "○";
    const id = c.channel_id;
    const twice = (catalog.byChannel.get(id) || []).length > 1 ? ` @${escapeText(c.device.device_id)}` : "";
    opts.push(`<option value="${key}" data-channel="${id}" data-i18n="off" ${key === selected ? "selected" : ""}>${on} ${escapeText(c.name || id)} (${id}${twice})</option>`);
  }
  return opts.join("");
}

function escapeText(s) { return String(s).replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
