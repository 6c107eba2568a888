// Minimal operator UI: log in, list devices with channels, list alarms.
const state = { token: sessionStorage.getItem("token") };

async function api(path, options = {}) {
  const headers = Object.assign({ "Content-Type": "application/json" }, options.headers || {});
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401) { logout(); throw new Error("not logged in"); }
  if (!resp.ok) throw new Error((await resp.json()).detail || resp.statusText);
  return resp.status === 204 ? null : resp.json();
}

function esc(s) { return String(s ?? "").replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }

function logout() { state.token = null; sessionStorage.removeItem("token"); show(); }

async function show() {
  document.getElementById("login-view").hidden = !!state.token;
  document.getElementById("app-view").hidden = !state.token;
  if (state.token) {
    const me = await api("/api/auth/me");
    document.getElementById("who").textContent = me.username + " (" + me.role + ")";
    await render("devices");
  } else {
    document.getElementById("who").textContent = "";
  }
}

const views = {
  async devices() {
    const devices = await api("/api/devices");
    let html = "<table id='devices'><tr><th>ID</th><th>名称</th><th>状态</th><th>厂商</th><th>通道</th><th>地址</th></tr>";
    for (const d of devices) {
      html += `<tr><td>${esc(d.device_id)}</td><td>${esc(d.name)}</td>` +
        `<td class="${d.online ? "online" : "offline"}">${d.online ? "在线 online" : "离线 offline"}</td>` +
        `<td>${esc(d.manufacturer)}</td><td>${d.channel_count}</td><td>${esc(d.remote_host)}:${d.remote_port}</td></tr>`;
    }
    return html + "</table>";
  },
  async alarms() {
    const alarms = await api("/api/alarms");
    let html = "<table id='alarms'><tr><th>时间</th><th>类型</th><th>通道</th><th>状态</th><th>处置</th></tr>";
    for (const a of alarms) {
      html += `<tr><td>${esc(a.raised_at)}</td><td>${esc(a.alarm_type)} ${esc(a.rule)}</td><td>${esc(a.video_code)}</td>` +
        `<td>${a.active ? "报警" : "已销警"}</td><td>${esc(a.handling)}</td></tr>`;
    }
    return html + "</table>";
  },
};

async function render(name) {
  try { document.getElementById("content").innerHTML = await views[name](); }
  catch (e) { document.getElementById("content").textContent = e.message; }
}

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  try {
    const resp = await fetch("/api/auth/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
    });
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.detail || "login failed");
    state.token = body.access_token; sessionStorage.setItem("token", state.token);
    document.getElementById("login-error").textContent = "";
    await show();
  } catch (e) { document.getElementById("login-error").textContent = e.message; }
});
document.querySelectorAll("nav button").forEach(b => b.addEventListener("click", () => render(b.dataset.view)));
show();
