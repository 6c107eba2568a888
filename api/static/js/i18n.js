// UI language: 中文 (Chinese only, the default), EN (English only) or 双语 (both).  The modules
// write every label bilingual in one string, Chinese first: "报警 Alarms", "分屏 Layout:",
// "全屏 Full screen (双击 double click)".  In zh or en mode this module rewrites those strings
// in text nodes and in the title / placeholder / aria-label attributes to the one language,
// for the whole page at start and then for what a MutationObserver reports as added or
// changed.  The original string is remembered (a WeakMap for text nodes, data-i18n-<attr> for
// attributes) so 双语 puts it back.  Never touched: form values, <script>/<style>/<textarea>,
// anything inside data-i18n="off" (camera, device and organisation names are data), and the
// attributes an element names in data-i18n-keep="title ...".  The choice is the browser's
// (localStorage), not the user's; a browser that has none gets 中文.  A few strings the
// server or a view writes in Chinese only (the alarm type names of the code tables, "4 画面")
// get their English from GLOSSARY / TILES below in EN.
const STORE_KEY = "vms.lang";
export const MODES = ["zh", "en", "bi"];
export const DEFAULT_MODE = "zh";
const ATTRS = ["title", "placeholder", "aria-label"];
const SKIP_TAGS = new Set(["SCRIPT", "STYLE", "TEXTAREA", "NOSCRIPT"]);

// CJK ideographs, CJK punctuation, full-width forms: the Chinese side of a label.
const CJK = /[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]/;
const IDEOGRAPH = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/;
const LATIN = /[A-Za-z]/;
// A code ("GB28181", "MP4", "PTZ") inside a Chinese phrase stays with it.
const CODE = /^(?=.*[A-Z])[A-Z0-9][A-Z0-9._:/+-]*$/;
const NUM = /^\d[\d.,:/%×-]*$/;
const TOKENS = /\s+|[()]|[^\s()]+/g;

// "CJK words + space + Latin words" pairs → the one side; digits, symbols, codes and words of
// one language only (data, units) are shared: "共 total 12" → "共 12" / "total 12",
// "1 小时 1 h" → "1 小时" / "1 h", "片段 ranges: 2" → "片段: 2" / "ranges: 2".  Returns the
// string unchanged when nothing pairs.
export function pick(text, mode) {
  if (mode !== "zh" && mode !== "en") return text;
  if (!IDEOGRAPH.test(text) || !LATIN.test(text)) return text;
  const toks = text.match(TOKENS) || [];
  const cls = toks.map(t => (/^\s+$/.test(t) ? "S" : t === "(" ? "O" : t === ")" ? "X" : CJK.test(t) ? "C" : LATIN.test(t) ? "L" : "N"));
  const nextWord = i => { while (i < toks.length && cls[i] === "S") i++; return i; };
  const prevWord = i => { while (i >= 0 && cls[i] === "S") i--; return i; };
  const isNum = i => i >= 0 && i < toks.length && cls[i] === "N" && NUM.test(toks[i]);

  // Runs: a C-run starts and ends on a Chinese word (digits, symbols and codes inside it are
  // part of it), an L-run likewise on a Latin word.  Parentheses end a run.
  const runs = [];
  for (let i = 0; i < toks.length; i++) {
    const kind = cls[i];
    if (kind !== "C" && kind !== "L") continue;
    let last = i;
    // "错误 error: camera not found": what follows an English label's colon is data, shared
    // (unless the Chinese has its colon too: "无：规则全天运行 none: rules run at all times").
    const prev = runs[runs.length - 1];
    const labelled = kind === "L" && prev && prev.kind === "C" && !/[:：]/.test(toks.slice(prev.start, prev.end + 1).join(""));
    for (let j = i; j < toks.length; j++) {
      if (labelled && cls[j] === "L" && toks[j].endsWith(":")) { last = j; break; }
      if (j === i) continue;
      const c = cls[j];
      if (c === "S" || c === "N") continue;
      if (c === kind) { last = j; continue; }
      if (kind === "C" && c === "L" && CODE.test(toks[j])) continue; // kept only if a C follows
      break;
    }
    runs.push({ kind, start: i, end: last });
    i = last;
  }

  const drop = new Set(), keep = new Set();
  const edit = new Map(); // token index → replacement (a colon carried over)
  const pairedL = new Set(); // end indices of paired L-runs
  const zh = mode === "zh";
  let paired = false;
  for (let r = 0; r + 1 < runs.length; r++) {
    const c = runs[r], l = runs[r + 1];
    if (c.kind !== "C" || l.kind !== "L") continue;
    const mid = [];
    let k = nextWord(c.end + 1);
    while (k < l.start && isNum(k)) { mid.push(k); k = nextWord(k + 1); }
    if (k !== l.start || mid.length > 1) continue; // "视频监控 · GB28181 VMS": not a pair
    paired = true;
    pairedL.add(l.end);
    const gone = zh ? l : c;
    for (let j = gone.start; j <= gone.end; j++) drop.add(j);

    // Numbers around the pair: one the English repeats belongs to one side, others are shared.
    let pre = prevWord(c.start - 1);
    if (!isNum(pre) || isNum(prevWord(pre - 1)) || runs.some(x => x.end === prevWord(pre - 1) && x.kind === "L")) pre = -1;
    let trail = nextWord(l.end + 1);
    if (!isNum(trail)) trail = -1;
    const m = mid.length ? mid[0] : -1;
    const cText = toks.slice(c.start, c.end + 1).join("");
    const cDigits = cText.replace(/\D/g, "");
    if (m >= 0 && pre >= 0 && toks[m] === toks[pre]) drop.add(zh ? m : pre); // "1 小时 1 h"
    else if (m >= 0 && trail >= 0 && toks[m] === toks[trail]) drop.add(zh ? trail : m); // "前 15 top 15"
    else if (m < 0 && pre >= 0 && toks[l.start].startsWith(toks[pre]) && !/^\d/.test(toks[l.start].slice(toks[pre].length))) {
      if (!zh) drop.add(pre); // "1 分钟聚合 1-min buckets"
    } else if (trail >= 0 && cDigits && [...toks[trail].replace(/\D/g, "")].every(d => cDigits.includes(d))) {
      if (zh) drop.add(trail); // "表2/表3/表4 Tables 2-4", "1号罐 tank 1"
    } else {
      // a code the English repeats is the Chinese side's ("浏览器不支持 HLS this browser
      // cannot play HLS"); otherwise a code in front of English words is English ("导出 CSV Export").
      let j = nextWord(l.start);
      const codes = [];
      while (j <= l.end && cls[j] === "L" && CODE.test(toks[j])) { codes.push(j); j = nextWord(j + 1); }
      const rest = toks.slice(j, l.end + 1);
      if (codes.length && rest.some(t => LATIN.test(t) && !CODE.test(t)) && codes.every(i => rest.includes(toks[i]))) {
        for (const i of codes) { if (zh) keep.add(i); else drop.add(i); }
      }
    }

    const lastC = toks[c.end], lastL = toks[l.end];
    if (zh && /[:;,]$/.test(lastL) && !/[:;,：；，。]$/.test(lastC)) edit.set(c.end, lastC + lastL.slice(-1));
    if (!zh && /[:：]$/.test(lastC) && !/[:;,]$/.test(lastL)) edit.set(l.end, lastL + ":");
    r++;
  }
  if (!paired) return text;
  for (const i of keep) drop.delete(i);

  // "失败 Failed (dead)": an English-only aside right after a pair's English goes with it; a
  // unit or a code in parentheses ("冷却 cooldown (s)", "(sip.upstreams)") is shared.
  if (zh) {
    for (const run of runs) {
      if (run.kind !== "L" || drop.has(run.start)) continue;
      const open = prevWord(run.start - 1), close = nextWord(run.end + 1);
      if (open < 0 || cls[open] !== "O" || cls[close] !== "X" || !pairedL.has(prevWord(open - 1))) continue;
      const words = toks.slice(run.start, run.end + 1).filter((_, k) => cls[run.start + k] !== "S");
      if (words.some(w => /[._/=@]/.test(w)) || !words.some(w => /[A-Za-z]{4,}/.test(w))) continue;
      for (let k = run.start; k <= run.end; k++) drop.add(k);
    }
  }

  // Join what is kept: one space where words were dropped, none after "(" or before ")",
  // empty parentheses gone, the original leading and trailing white space kept.
  const out = [];
  let space = "";
  for (let i = 0; i < toks.length; i++) {
    if (drop.has(i)) continue;
    const t = edit.has(i) ? edit.get(i) : toks[i];
    if (cls[i] === "S") { if (!space) space = t; continue; }
    if (cls[i] === "X" && out.length && out[out.length - 1] === "(") {
      out.pop();
      if (out.length && /^\s+$/.test(out[out.length - 1])) out.pop();
      space = "";
      continue;
    }
    if (space && out.length && out[out.length - 1] !== "(" && cls[i] !== "X") out.push(space);
    space = "";
    out.push(t);
  }
  const lead = text.match(/^\s*/)[0], trail = text.slice(lead.length).match(/\s*$/)[0];
  return lead + out.join("").trim() + trail;
}

// Chinese-only names → English, for EN: the alarm types of the two code tables
// (analyzers/catalog.py name_zh → name_en; the API's type_name is the Chinese name).
const GLOSSARY = {
  "明火": "open flame / fire",
  "烟雾": "smoke",
  "翻越围栏": "climbing over a fence",
  "区域入侵": "area intrusion",
  "人员离岗": "person off post",
  "人员聚集": "people gathering",
  "打电话": "making a phone call",
  "抽烟": "smoking",
  "未佩戴安全帽": "no safety helmet",
  "未穿着工作服": "not wearing work clothes",
  "灭火器未摆放在作业区域": "fire extinguisher not in the work area",
  "静电释放时间未达到规定时长开始进行卸油作业": "unloading started before the static-discharge time was reached",
};
const esc = w => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
// A glossary name as a whole word: not inside a longer Chinese phrase.
const NAMES = new RegExp(`(?<![\u3400-\u9fff])(${Object.keys(GLOSSARY).sort((a, b) => b.length - a.length).map(esc).join("|")})(?![\u3400-\u9fff])`, "g");
// The live wall's layout buttons: "4 画面" → "4 tiles".
const TILES = /^(\s*)(\d+) 画面(\s*)$/;

// The string as shown in a mode: pick's split, and in EN the glossary for what stays Chinese.
export function translate(text, mode) {
  const out = pick(text, mode);
  if (mode !== "en" || !IDEOGRAPH.test(out)) return out;
  const tiles = out.match(TILES);
  if (tiles) return `${tiles[1]}${tiles[2]} ${tiles[2] === "1" ? "tile" : "tiles"}${tiles[3]}`;
  return out.replace(NAMES, w => GLOSSARY[w]);
}

// --- the page ------------------------------------------------------------------------------

let mode = DEFAULT_MODE;
let observer = null;
let touched = false; // anything rewritten yet: until then 双语 needs no observer
const texts = new WeakMap(); // text node → {orig, shown}
const shownAttr = new WeakMap(); // element → {attr: shown}

export function currentMode() { return mode; }

// Text inside <textarea> is a value; an element's own attributes only by data-i18n="off".
function skipped(el, attrs = false) {
  for (let e = el; e; e = e.parentElement) {
    if ((SKIP_TAGS.has(e.tagName) && !(attrs && e === el && e.tagName === "TEXTAREA")) || e.dataset?.i18n === "off") return true;
  }
  return false;
}

// checked: the caller knows no ancestor is skipped (a tree walk that rejects those).
function doText(node, checked = false) {
  const seen = texts.get(node);
  if (!seen && mode === "bi") return; // nothing of ours to put back
  let orig = node.data;
  if (seen) {
    if (node.data === seen.shown) orig = seen.orig;
    else texts.delete(node); // the module wrote a new string
  }
  // cheap: fps, numbers; Chinese only needs a look in EN (the glossary)
  if (!seen && (!IDEOGRAPH.test(orig) || (!LATIN.test(orig) && mode !== "en"))) return;
  if (!node.parentElement || (!checked && skipped(node.parentElement))) return;
  const want = translate(orig, mode);
  if (want === orig && !seen) return;
  if (want !== node.data) { node.data = want; touched = true; }
  if (want === orig) texts.delete(node);
  else texts.set(node, { orig, shown: want });
}

// The attribute's value is our rewrite of the original kept in data-i18n-<name> (also on a
// copy made by cloneNode, which the WeakMap does not know).
function ours(el, name, value) {
  const stored = el.getAttribute("data-i18n-" + name);
  if (stored == null || value == null) return false;
  const shown = shownAttr.get(el);
  if (shown && name in shown) return value === shown[name];
  return value === translate(stored, "zh") || value === translate(stored, "en");
}

function doAttr(el, name) {
  const value = el.getAttribute(name);
  const key = "data-i18n-" + name;
  const shown = shownAttr.get(el);
  if (mode === "bi" && !el.hasAttribute(key)) return;
  let orig = value;
  if (el.hasAttribute(key)) {
    if (ours(el, name, value)) orig = el.getAttribute(key);
    else { el.removeAttribute(key); if (shown) delete shown[name]; } // the module wrote anew
  }
  if (orig == null) return;
  const keep = el.dataset.i18nKeep;
  const want = keep && keep.split(/\s+/).includes(name) ? orig : translate(orig, mode);
  if (want !== value) { el.setAttribute(name, want); touched = true; }
  if (want === orig) {
    el.removeAttribute(key);
    if (shown) delete shown[name];
  } else {
    el.setAttribute(key, orig);
    const map = shown || {};
    map[name] = want;
    shownAttr.set(el, map);
  }
}

function doElementAttrs(el) {
  if (skipped(el, true)) return;
  for (const name of ATTRS) if (el.hasAttribute(name) || el.hasAttribute("data-i18n-" + name)) doAttr(el, name);
}

// One subtree: its text nodes and the three attributes of its elements.
function doTree(root) {
  if (root.nodeType === Node.TEXT_NODE) { doText(root); return; }
  if (root.nodeType !== Node.ELEMENT_NODE || skipped(root, true)) return;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT, {
    acceptNode: n => (n.nodeType === Node.ELEMENT_NODE && (n.dataset?.i18n === "off" || (SKIP_TAGS.has(n.tagName) && n.tagName !== "TEXTAREA"))
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  for (let n = walker.currentNode; n; n = walker.nextNode()) {
    if (n.nodeType === Node.TEXT_NODE) doText(n, !SKIP_TAGS.has(n.parentElement?.tagName));
    else for (const name of ATTRS) if (n.hasAttribute(name)) doAttr(n, name);
  }
}

function onMutations(records) {
  for (const rec of records) {
    if (rec.type === "characterData") doText(rec.target);
    else if (rec.type === "attributes") { if (rec.target.isConnected) doElementAttrs(rec.target); }
    else for (const n of rec.addedNodes) if (n.isConnected) doTree(n);
  }
  observer.takeRecords(); // our own rewrites: nothing more to do
}

function watch() {
  if (!observer) observer = new MutationObserver(onMutations);
  observer.observe(document.body, { childList: true, subtree: true, characterData: true, attributes: true, attributeFilter: ATTRS });
}

// 双语: every remembered original back.
function restore() {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const seen = texts.get(n);
    if (seen) { if (n.data === seen.shown) n.data = seen.orig; texts.delete(n); }
  }
  for (const name of ATTRS) {
    const key = "data-i18n-" + name;
    for (const el of document.body.querySelectorAll(`[${key}]`)) {
      const shown = shownAttr.get(el);
      if (ours(el, name, el.getAttribute(name))) el.setAttribute(name, el.getAttribute(key));
      el.removeAttribute(key);
      if (shown) delete shown[name];
    }
  }
}

export function setMode(next, remember = true) {
  if (!MODES.includes(next)) next = DEFAULT_MODE;
  mode = next;
  if (remember) try { localStorage.setItem(STORE_KEY, next); } catch (_) { /* private mode: this page only */ }
  document.documentElement.lang = next === "en" ? "en" : "zh-CN";
  document.documentElement.dataset.lang = next;
  if (observer) { observer.takeRecords(); observer.disconnect(); }
  if (next === "bi" && touched) restore();
  else if (next !== "bi") doTree(document.body);
  // 双语 after a rewrite still watches: a node rewritten while out of the page (a view kept
  // aside) gets its original back when it comes back in.
  if (touched || next !== "bi") watch();
  document.querySelectorAll("[data-lang-choice]").forEach(b => {
    const on = b.dataset.langChoice === next;
    b.classList.toggle("active", on);
    b.setAttribute("aria-pressed", on ? "true" : "false");
  });
}

// The saved mode, applied to the page; the header's buttons switch it.
export function startI18n() {
  let saved = DEFAULT_MODE;
  try { saved = localStorage.getItem(STORE_KEY) || DEFAULT_MODE; } catch (_) { /* none saved: 中文 */ }
  document.querySelectorAll("[data-lang-choice]").forEach(b => b.addEventListener("click", () => setMode(b.dataset.langChoice)));
  setMode(saved, false);
}
