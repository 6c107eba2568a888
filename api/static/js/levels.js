// Warning levels (spec/sensors.md §4) and the sensor-side labels shared by the sensor views.
import { h } from "./api.js";

export const LEVELS = {
  red: "红色 重大 red", orange: "橙色 较大 orange", yellow: "黄色 一般 yellow", blue: "蓝色 低 blue",
};
export const LEVEL_ORDER = ["red", "orange", "yellow", "blue"];

export const KINDS = {
  gas_combustible: "可燃气体 combustible gas", gas_toxic: "有毒气体 toxic gas", level: "液位 level",
  pressure: "压力 pressure", temperature: "温度 temperature", flow: "流量 flow", humidity: "湿度 humidity",
  grounding: "静电接地 grounding", overflow: "溢油 overflow", sis: "安全仪表 SIS",
};

export const INSTALLATION_KINDS = {
  tank_area: "储罐区 tank area", warehouse: "仓库 warehouse", process_unit: "工艺装置 process unit",
  loading_rack: "装卸栈台 loading rack", pipeline: "管道 pipeline", other: "其他 other",
};

export const CAUSES = { hh: "高高报 HH", h: "高报 H", l: "低报 L", ll: "低低报 LL", rate: "变化率 rate", state: "状态 state" };

export const SITE_KINDS = ["enterprise", "gas_station"];

export function levelChip(level) {
  if (!level) return h("span", { class: "level-chip none" }, "正常 normal");
  return h("span", { class: "level-chip", "data-level": level }, LEVELS[level] || level);
}

export function fmtValue(value, unit = "") {
  if (value == null || !Number.isFinite(Number(value))) return "–";
  const n = Number(value);
  const text = Math.abs(n) >= 1000 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);
  return unit ? `${text} ${unit}` : text;
}

// Discrete points (grounding, overflow, SIS) report 0/1: shown as words, not numbers.
const STATES = {
  grounding: ["接地正常 connected", "接地断开 disconnected"], overflow: ["正常 normal", "溢油 overflow"],
  sis: ["正常 normal", "触发 tripped"],
};

export function fmtPoint(kind, value, unit = "") {
  const words = STATES[kind];
  if (words && value != null && Number.isFinite(Number(value))) return words[Number(value) >= 0.5 ? 1 : 0];
  return fmtValue(value, unit);
}

// Enterprises and gas stations the caller sees, for the selectors of the sensor views.
export function siteOrgs(orgs) {
  return orgs.filter(o => SITE_KINDS.includes(o.kind));
}
