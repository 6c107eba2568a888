// HTTP helpers shared by every view: the bearer token, JSON calls, escaping, small DOM helpers.
export const session = {
  token: sessionStorage.getItem("token"),
  me: null,
  onBeforeLogout: () => {}, // still holds the token: hang up what needs it
  onLogout: () => {},
};

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(path, options = {}) {
  const headers = Object.assign({ "Content-Type": "application/json" }, options.headers || {});
  if (session.token) headers.Authorization = "Bearer " + session.token;
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401 && session.token) { logout(); throw new ApiError(401, "登录已过期 session expired"); }
  if (!resp.ok) {
    let detail = resp.statusText;
    try { detail = (await resp.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new ApiError(resp.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return resp.status === 204 ? null : resp.json();
}

// URLs the browser loads by itself (<img>, hls.js, WebSocket) carry the token as a query parameter.
export function withToken(url) {
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(session.token || "");
}

export async function login(username, password) {
  const resp = await fetch("/api/auth/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, body.detail || "登录失败 login failed");
  setToken(body.access_token);
}

export function setToken(token) {
  session.token = token;
  sessionStorage.setItem("token", token);
}

export function logout() {
  // Revoke the tokens on the server too (best effort: an expired one is refused anyway).
  if (session.token) {
    fetch("/api/auth/logout", { method: "POST", headers: { Authorization: "Bearer " + session.token } }).catch(() => {});
  }
  session.onBeforeLogout();
  session.token = null;
  session.me = null;
  sessionStorage.removeItem("token");
  session.onLogout();
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const p = n => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
