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

export async function loadCatalog() {
  if (cache) return cache;
  const [orgs, devices] = await Promise.all([api("/api/orgs"), api("/api/devices")]);
  const channels = new Map();
  await mapLimit(devices, 6, async d => {
    d.channels = await api(`/api/devices/${d.device_id}/channels`).catch(() => []);
    for (const c of d.channels) channels.set(c.channel_id, { ...c, device: d });
  });
  cache = { orgs, devices, channels };
  return cache;
}

export function cameraLabel(catalog, channelId) {
  const c = catalog && catalog.channels.get(channelId);
  return c ? `${c.name || channelId}` : channelId;
}

export function cameraOptions(catalog, selected) {
  const opts = [`<option value="">— 选择摄像机 choose camera —</option>`];
  for (const [id, c] of catalog.channels) {
    const on = c.device.online ? "●" : "○";
    opts.push(`<option value="${id}" ${id === selected ? "selected" : ""}>${on} ${escapeText(c.name || id)} (${id})</option>`);
  }
  return opts.join("");
}

function escapeText(s) { return String(s).replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
