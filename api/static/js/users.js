// Users and roles of the administrator's subtree: create (the password policy's refusal shown),
// change role and organisation, disable/enable, reset the password, unlock, revoke tokens and
// give an uplink machine client its long-lived token.  Every API refusal is shown where it
// happened: the create form's or the user's own row.
import { api, fmtTime, h, session } from "./api.js";
import { ROLES, errorText, orgOptions } from "./admin_common.js";

export class UsersPanel {
  constructor() {
    this.orgs = [];
    this.users = [];
    this.messages = new Map(); // user id → {text, ok}: kept across a reload of the list
    this.createError = h("p", { class: "error", id: "user-create-error", role: "alert" });
    this.createOk = h("p", { class: "ok-msg", id: "user-create-ok", role: "status" });
    this.listError = h("p", { class: "error", role: "alert" });
    this.table = h("table", { id: "users" });
    this.form = h("form", { id: "user-create", class: "admin-form", onsubmit: ev => this.create(ev) });
    this.el = h("section", { class: "admin-users" },
      h("h3", {}, "用户与角色 Users and roles"),
      this.form, this.createError, this.createOk, this.listError, this.table);
  }

  async mount(root) {
    root.append(this.el);
    await this.refresh();
  }

  get global() { return session.me && session.me.org_id == null; }

  orgName(id) {
    if (id == null) return "全局 global";
    const o = this.orgs.find(x => x.id === id);
    return o ? o.name : `#${id}`;
  }

  async refresh() {
    try {
      [this.orgs, this.users] = await Promise.all([api("/api/orgs"), api("/api/users")]);
      this.listError.textContent = "";
    } catch (e) { this.listError.textContent = errorText(e); return; }
    this.renderForm();
    this.renderTable();
  }

  renderForm() {
    const roles = Object.entries(ROLES).map(([k, v]) => h("option", { value: k }, v));
    this.form.replaceChildren(
      h("strong", {}, "新建用户 New user"), " ",
      h("label", {}, "用户名 Username ", h("input", { name: "username", required: true, autocomplete: "off" })), " ",
      h("label", {}, "初始密码 Password ", h("input", { name: "password", type: "password", required: true, autocomplete: "new-password" })), " ",
      h("label", {}, "角色 Role ", h("select", { name: "role" }, roles)), " ",
      h("label", {}, "组织 Organisation ", h("select", { name: "org_id" }, orgOptions(this.orgs, this.global ? null : session.me.org_id, this.global))), " ",
      h("button", { type: "submit" }, "创建 Create"),
      h("span", { class: "muted" }, " 用户首次登录须修改密码 the user must change it at first login"));
  }

  async create(ev) {
    ev.preventDefault();
    const f = new FormData(this.form);
    const org = f.get("org_id");
    const body = { username: f.get("username"), password: f.get("password"), role: f.get("role"), org_id: org ? Number(org) : null };
    this.createOk.textContent = "";
    try {
      const user = await api("/api/users", { method: "POST", body: JSON.stringify(body) });
      this.createError.textContent = "";
      this.form.reset();
      this.createOk.textContent = `已创建 created: ${user.username} (${ROLES[user.role] || user.role}, ${this.orgName(user.org_id)})`;
      await this.refresh();
    } catch (e) { this.createError.textContent = errorText(e); }
  }

  renderTable() {
    const head = h("tr", {}, ["用户名 Username", "角色 Role", "组织 Organisation", "状态 State", "操作 Actions"].map(t => h("th", {}, t)));
    this.table.replaceChildren(head, ...this.users.map(u => this.row(u)));
    if (!this.users.length) this.table.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "暂无用户 no users")));
  }

  state(u) {
    const parts = [h("span", { class: u.is_active ? "online user-active" : "offline user-active" }, u.is_active ? "启用 active" : "已停用 disabled")];
    const locked = u.locked_until && new Date(u.locked_until) > new Date();
    if (locked) parts.push(h("span", { class: "offline user-locked" }, ` · 锁定至 locked until ${fmtTime(u.locked_until)}`));
    if (u.must_change_password) parts.push(h("span", { class: "user-must-change" }, " · 须修改密码 must change password"));
    if (u.failed_logins) parts.push(h("span", { class: "muted" }, ` · 登录失败 failed logins ${u.failed_logins}`));
    return parts;
  }

  row(u) {
    const msg = this.messages.get(u.id);
    const note = h("div", { class: msg && !msg.ok ? "error row-msg" : "ok-msg row-msg", role: "alert" }, msg ? msg.text : "");
    const say = (text, ok) => { this.messages.set(u.id, { text, ok }); note.textContent = text; note.className = ok ? "ok-msg row-msg" : "error row-msg"; };
    const role = h("select", { class: "user-role", "aria-label": "角色 role" },
      Object.entries(ROLES).map(([k, v]) => h("option", { value: k, selected: k === u.role }, v)));
    const org = h("select", { class: "user-org", "aria-label": "组织 organisation" }, orgOptions(this.orgs, u.org_id, this.global));
    const act = async (what, fn, reload = true) => {
      try {
        const text = await fn();
        say(`${what}: ${text || "完成 done"}`, true);
        if (reload) await this.refresh();
      } catch (e) { say(`${what}: ${errorText(e)}`, false); }
    };
    const patch = body => api(`/api/users/${u.id}`, { method: "PATCH", body: JSON.stringify(body) });
    const save = () => act("保存 saved", async () => {
      const body = {};
      if (role.value !== u.role) body.role = role.value;
      const orgId = org.value ? Number(org.value) : null;
      if (orgId !== u.org_id) { if (orgId == null) body.move_to_top = true; else body.org_id = orgId; }
      if (!Object.keys(body).length) return "无变化 nothing changed";
      await patch(body);
      return "已保存，令牌已注销 saved, tokens revoked";
    });
    const toggle = () => act(u.is_active ? "停用 disable" : "启用 enable", async () => {
      await patch({ is_active: !u.is_active });
      return u.is_active ? "已停用 disabled" : "已启用 enabled";
    });
    const password = h("input", { type: "password", class: "user-new-password", placeholder: "新密码 new password", autocomplete: "new-password", "aria-label": "新密码 new password" });
    const reset = () => act("重置密码 reset password", async () => {
      await patch({ password: password.value });
      return "已重置，须首次登录修改 reset, must be changed at next login";
    });
    const revoke = () => act("注销令牌 revoke tokens", async () => {
      await api(`/api/users/${u.id}/revoke`, { method: "POST" });
      return "所有令牌已注销 every token revoked";
    });
    const unlock = () => act("解锁 unlock", async () => { await patch({ unlock: true }); return "已解锁 unlocked"; });
    const ttl = h("input", { type: "number", class: "token-ttl", min: 1, max: 3650, value: 365, "aria-label": "有效天数 days" });
    const tokenBox = h("div", { class: "token-box" });
    const token = () => act("机器令牌 machine token", async () => {
      const t = await api(`/api/users/${u.id}/token`, { method: "POST", body: JSON.stringify({ ttl_days: Number(ttl.value) }) });
      tokenBox.replaceChildren(h("span", { class: "muted" }, "仅显示一次 shown once: "),
        h("input", { class: "token-value", readonly: true, value: `Bearer ${t.access_token}`, size: 40, onfocus: e => e.target.select() }));
      return `有效 valid ${Math.round(t.expires_in / 86400)} 天 days`;
    }, false);
    const locked = u.locked_until && new Date(u.locked_until) > new Date();
    return h("tr", { "data-user": u.id, "data-username": u.username, class: u.is_active ? "" : "disabled" },
      h("td", {}, h("strong", {}, u.username), " ", h("code", {}, `#${u.id}`)),
      h("td", {}, role),
      h("td", {}, org),
      h("td", { class: "user-state" }, this.state(u)),
      h("td", { class: "actions" },
        h("button", { class: "small user-save", onclick: save }, "保存 Save"),
        h("button", { class: "small user-toggle", onclick: toggle }, u.is_active ? "停用 Disable" : "启用 Enable"),
        locked ? h("button", { class: "small user-unlock", onclick: unlock }, "解锁 Unlock") : "",
        h("button", { class: "small user-revoke", onclick: revoke }, "注销令牌 Revoke tokens"),
        h("details", { class: "user-more" }, h("summary", {}, "更多 More"),
          h("div", {}, password, h("button", { class: "small user-reset", onclick: reset }, "重置密码 Reset password")),
          u.role === "uplink"
            ? h("div", {}, "有效天数 days ", ttl, h("button", { class: "small user-token", onclick: token }, "生成机器令牌 Machine token"), tokenBox)
            : ""),
        note));
  }
}
