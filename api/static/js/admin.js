// 管理 Admin: the administrator's set-up that used to be API-only — users and roles, the
// superiors this node cascades to, the provincial receivers with their outbox, and the
// cluster's nodes when the installation is scaled out.
import { h } from "./api.js";
import { UsersPanel } from "./users.js";
import { ReceiversPanel, SuperiorsPanel } from "./uplink_status.js";
import { ClusterPanel } from "./cluster.js";

export class AdminView {
  constructor() {
    this.users = new UsersPanel();
    this.superiors = new SuperiorsPanel();
    this.receivers = new ReceiversPanel();
    this.cluster = new ClusterPanel();
  }

  async mount(root) {
    const refresh = h("button", { class: "admin-refresh", onclick: () => this.refresh() }, "刷新 Refresh");
    const body = h("div", { class: "admin-view" });
    root.replaceChildren(h("div", { class: "toolbar" }, h("h2", {}, "管理 Admin"), refresh), body);
    // each panel shows its own error: one refused (a county admin's cascade view) hides nothing else
    await Promise.all([this.users.mount(body), this.superiors.mount(body), this.receivers.mount(body),
      this.cluster.mount(body)]);
  }

  async refresh() {
    await Promise.all([this.users.refresh(), this.superiors.refresh(), this.receivers.refresh(),
      this.cluster.refresh()]);
  }
}
