// Helpers of the administration view: API errors as one clear line, ages, role names.
import { ApiError } from "./api.js";

const STATUS = {
  400: "请求无效 bad request", 403: "无权限 forbidden", 404: "未找到 not found", 409: "冲突 conflict",
  422: "输入无效 invalid input", 429: "请求过多 too many requests", 502: "设备错误 device error",
  503: "服务未运行 service not running", 504: "设备无应答 device timeout",
};

// The create form's default is the first: an operator, never an administrator by accident.
export const ROLES = {
  operator: "值班员 operator", enterprise: "企业用户 enterprise", admin: "管理员 admin",
  uplink: "上报接口 uplink (machine)", auditor: "审计员 auditor",
};

// "422 输入无效 invalid input: password must have at least 12 characters"; a validation
// error's list (FastAPI's detail array) is named field by field.
export function errorText(e) {
  if (!(e instanceof ApiError)) return `错误 error: ${e && e.message ? e.message : e}`;
  let detail = e.message;
  try {
    const parsed = JSON.parse(detail);
    if (Array.isArray(parsed)) {
      detail = parsed.map(d => `${(d.loc || []).filter(p => p !== "body").join(".")}: ${d.msg}`).join("; ");
    }
  } catch (_) { /* a plain message */ }
  return `${e.status} ${STATUS[e.status] || "错误 error"}: ${detail}`;
}

export function fmtAge(seconds) {
  if (seconds == null) return "—";
  const s = Math.round(seconds);
  if (s < 120) return `${s} 秒 s`;
  if (s < 7200) return `${Math.round(s / 60)} 分钟 min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} 小时 h`;
  return `${(s / 86400).toFixed(1)} 天 days`;
}

// The organisations as indented options (the tree order of their paths).
export function orgOptions(orgs, selected, allowNone) {
  const depth = new Map();
  const byId = new Map(orgs.map(o => [o.id, o]));
  const level = o => {
    if (depth.has(o.id)) return depth.get(o.id);
    const p = byId.get(o.parent_id);
    const d = p ? level(p) + 1 : 0;
    depth.set(o.id, d);
    return d;
  };
  const sorted = [...orgs].sort((a, b) => String(a.path).localeCompare(String(b.path)));
  const opts = sorted.map(o => {
    const opt = document.createElement("option");
    opt.value = String(o.id);
    opt.textContent = "\u3000".repeat(level(o)) + o.name + (o.code ? ` (${o.code})` : "");
    opt.selected = selected === o.id;
    return opt;
  });
  if (allowNone) {
    const none = document.createElement("option");
    none.value = "";
    none.textContent = "无（全局） none (global)";
    none.selected = selected == null;
    opts.unshift(none);
  }
  return opts;
}
