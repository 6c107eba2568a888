// Operator UI: login, device tree, live wall (WebRTC), alarms with live pop-ups, replay (HLS),
// sensors (live values, trends), sensor warnings (escalation, handling) and offline supervision.
import { ApiError, api, login, logout, session, setToken } from "./js/api.js";
import { AlarmPush, AlarmsView } from "./js/alarms.js";
import { DeviceAlarmsPanel, deviceAlarmToast } from "./js/device_alarms.js";
import { renderDevices } from "./js/devices.js";
import { LiveWall } from "./js/live.js";
import { ReplayView } from "./js/replay.js";
import { SensorsView } from "./js/sensors.js";
import { SupervisionView } from "./js/supervision.js";
import { WarningsView, warningSnapshot, warningToast } from "./js/warnings.js";
import { cameraKey, invalidate } from "./js/catalog.js";
import { IntakeView } from "./js/intake.js";
import { SetupView } from "./js/setup.js";
import { StatsView } from "./js/stats.js";
import { AdminView } from "./js/admin.js";
import { MapView } from "./js/map.js";
import { AlarmNotifier } from "./js/alarm_notify.js";
import { startI18n } from "./js/i18n.js";

startI18n(); // 中文 / EN / 双语 (header switch, remembered by the browser)

const VIEWS = ["devices", "live", "map", "alarms", "replay", "sensors", "warnings", "supervision", "intake", "setup", "stats", "admin"];
// Views only some roles get (their nav buttons are hidden for the others, the API refuses anyway).
const ROLE_VIEWS = { admin: ["admin"] };
const allowed = name => !ROLE_VIEWS[name] || (session.me && ROLE_VIEWS[name].includes(session.me.role));
const $ = id => document.getElementById(id);

// A camera is named by its key "device/channel" (or a bare channel ID the views resolve).
const actions = {
  live: async camera => { await go("live"); wall.show(camera); },
  replay: (camera, at) => go("replay", { channelId: camera, at }),
  warning: warningId => go("warnings", { warningId }),
  openRef: (source, ref) => (source === "video" ? go("alarms") : go("warnings", { warningId: ref })),
  view: name => go(name),
};

let wall = null; // built after login: its saved layout belongs to the user
let alarmsView = new AlarmsView(actions);
let deviceAlarms = new DeviceAlarmsPanel(actions); // GB28181 alarms of NVRs and cameras
let replayView = new ReplayView();
let sensorsView = new SensorsView(actions);
let warningsView = new WarningsView(actions);
let supervisionView = new SupervisionView(actions);
let intakeView = new IntakeView();
let setupView = new SetupView(actions);
let statsView = new StatsView();
let adminView = new AdminView();
let mapView = new MapView(actions);
// New alarms: a beep (unless muted), the badge flashing, the title blinking until seen.
const notifier = new AlarmNotifier($("alarm-sound"), $("alarm-badge"));
const push = new AlarmPush($("toasts"), actions, (alarm, kind) => {
  if (kind === "alarm.raised") { alarmsView.markNew(alarm.alarm_id); notifier.alarm(alarm.level ?? alarm.priority, current === "alarms"); }
  refreshBadge();
  if (current === "alarms") alarmsView.refresh();
  if (current === "map") mapView.onAlarm();
  if (kind === "alarm.raised" && wall) wall.alarmRaised(cameraKey(alarm.device_id, alarm.video_code));
});
// Device online/offline pushes (sent to administrators) refresh the tree while it is shown.
let deviceRefresh = null;
push.onDevice = () => {
  invalidate();
  clearTimeout(deviceRefresh); // a burst (many NVRs coming back) renders once
  deviceRefresh = setTimeout(() => { if (current === "devices") renderDevices($("view-devices"), actions); }, 1500);
};
let current = null;

// Sensor-side pushes: live values and point states to the sensors view; warnings to the
// warnings view, the nav badge, the alarm panel and the wall (linked cameras come up).
push.on(msg => {
  const kind = msg.kind || "", data = msg.data || {};
  if (kind === "device.alarm") { deviceAlarms.onEvent(data); deviceAlarmToast(push, data, actions); notifier.alarm(data.priority, current === "alarms"); return; }
  if (kind === "sensor.values") sensorsView.onValues(data);
  else if (kind === "sensor.state") sensorsView.onState(data);
  if (!kind.startsWith("warning.")) return;
  sensorsView.onWarning(data, kind);
  warningsView.onEvent(data, kind);
  if (kind === "warning.opened" || kind === "warning.escalated") {
    if (wall) wall.warningRaised(warningCameras(data), data.level, data.warning_id);
    warningToast(push, data, kind, actions);
    notifier.warning(data.level, current === "warnings");
  } else if (kind === "warning.updated" && data.snapshot_url) warningSnapshot(push, data);
  else if (wall && kind === "warning.downgraded") wall.warningChanged(data.warning_id, data.level);
  else if (wall && (kind === "warning.cleared" || data.handling === "closed")) wall.warningChanged(data.warning_id, "");
  refreshWarningBadge();
});

// A warning's linked cameras as keys (camera_refs: [device, channel]), else their codes.
function warningCameras(data) {
  if (Array.isArray(data.camera_refs) && data.camera_refs.length) return data.camera_refs.map(([d, c]) => cameraKey(d, c));
  return data.cameras || [];
}

async function go(name, args = {}) {
  if (!VIEWS.includes(name) || !allowed(name)) name = "live";
  if (current === "replay" && name !== "replay") replayView.unmount();
  if (current === "sensors" && name !== "sensors") sensorsView.unmount();
  if (current === "stats" && name !== "stats") statsView.unmount();
  if (current === "map" && name !== "map") mapView.unmount();
  current = name;
  if (name === "alarms") notifier.seen();
  if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
  document.querySelectorAll("#nav button[data-view]").forEach(b => b.classList.toggle("active", b.dataset.view === name));
  for (const v of VIEWS) $("view-" + v).hidden = v !== name;
  const root = $("view-" + name);
  try {
    if (name === "devices") await renderDevices(root, actions);
    else if (name === "live") { if (!root.firstChild) await wall.mount(root); }
    else if (name === "alarms") { await alarmsView.mount(root); await deviceAlarms.mount(root); }
    else if (name === "replay") await replayView.mount(root, args.channelId, args.at);
    else if (name === "sensors") await sensorsView.mount(root);
    else if (name === "warnings") await warningsView.mount(root, args.warningId);
    else if (name === "supervision") await supervisionView.mount(root);
    else if (name === "intake") await intakeView.mount(root);
    else if (name === "setup") await setupView.mount(root, args.camera);
    else if (name === "stats") await statsView.mount(root);
    else if (name === "admin") await adminView.mount(root);
    else if (name === "map") await mapView.mount(root);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) root.replaceChildren(document.createTextNode(e.message));
  }
}

async function countNew(path) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + session.token } });
  if (!resp.ok) return null;
  return Number(resp.headers.get("X-Total-Count") || (await resp.json()).length);
}

// New (not yet verified) sensor warnings in the caller's scope.
let warningBadgeTimer = null;
function refreshWarningBadge() {
  clearTimeout(warningBadgeTimer); // a burst of warning events counts once
  warningBadgeTimer = setTimeout(async () => {
    try {
      const fresh = await countNew("/api/warnings?handling=new&limit=1");
      if (fresh == null) return;
      $("warning-badge").textContent = fresh;
      $("warning-badge").hidden = fresh === 0;
    } catch (_) { /* badge is best effort */ }
  }, 300);
}

async function refreshBadge() {
  try {
    const resp = await fetch("/api/alarms?handling=new&limit=1", { headers: { Authorization: "Bearer " + session.token } });
    if (!resp.ok) return;
    const fresh = Number(resp.headers.get("X-Total-Count") || (await resp.json()).length);
    $("alarm-badge").textContent = fresh;
    $("alarm-badge").hidden = fresh === 0;
  } catch (_) { /* badge is best effort */ }
}

function gateNav() {
  document.querySelectorAll("#nav button[data-view]").forEach(b => { b.hidden = !allowed(b.dataset.view); });
}

async function show() {
  const loggedIn = !!session.token;
  $("login-view").hidden = loggedIn;
  $("password-view").hidden = true;
  $("app-view").hidden = !loggedIn;
  $("nav").hidden = !loggedIn;
  $("logout").hidden = !loggedIn;
  gateNav(); // until /me answers (and after a logout) no role-only button shows
  if (!loggedIn) { $("who").textContent = ""; return; }
  try { session.me = await api("/api/auth/me"); } catch (_) { return; }
  $("who").textContent = `${session.me.username} (${session.me.role})`;
  // A password set by someone else, or too old: nothing else works until it is changed.
  $("password-view").hidden = !session.me.password_change_required;
  if (session.me.password_change_required) {
    $("app-view").hidden = $("nav").hidden = true;
    return;
  }
  gateNav();
  wall ||= new LiveWall("vms.wall." + session.me.username);
  notifier.start(session.me.username);
  push.start();
  refreshBadge();
  refreshWarningBadge();
  await go(location.hash.slice(1) || "live");
}

session.onBeforeLogout = () => {
  push.stop();
  notifier.stop();
  if (wall) wall.stopAll();
};
session.onLogout = () => {
  invalidate(); // the next user sees other cameras
  replayView.unmount();
  sensorsView.unmount();
  $("alarm-badge").hidden = $("warning-badge").hidden = true; // the next user's counts differ
  VIEWS.forEach(v => $("view-" + v).replaceChildren());
  wall = null;
  alarmsView = new AlarmsView(actions);
  deviceAlarms = new DeviceAlarmsPanel(actions);
  replayView = new ReplayView();
  sensorsView = new SensorsView(actions);
  warningsView = new WarningsView(actions);
  supervisionView = new SupervisionView(actions);
  intakeView = new IntakeView();
  setupView.unmount();
  statsView.unmount();
  setupView = new SetupView(actions);
  statsView = new StatsView();
  adminView = new AdminView();
  mapView.unmount();
  mapView = new MapView(actions);
  current = null;
  show();
};

$("login-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  try {
    await login(form.get("username"), form.get("password"));
    $("login-error").textContent = "";
    ev.target.reset();
    await show();
  } catch (e) { $("login-error").textContent = e.message; }
});
$("password-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  if (form.get("new") !== form.get("repeat")) {
    $("password-error").textContent = "两次输入的新密码不一致 the new passwords differ";
    return;
  }
  try {
    const answer = await api("/api/auth/password", {
      method: "POST",
      body: JSON.stringify({ current_password: form.get("current"), new_password: form.get("new") }),
    });
    setToken(answer.access_token); // the old token is revoked by the change
    $("password-error").textContent = "";
    ev.target.reset();
    await show();
  } catch (e) { $("password-error").textContent = e.message; }
});
$("logout").addEventListener("click", () => logout());
document.querySelectorAll("#nav button[data-view]").forEach(b => b.addEventListener("click", () => go(b.dataset.view)));
window.addEventListener("hashchange", () => { if (session.token && location.hash.slice(1) !== current) go(location.hash.slice(1)); });
show();
