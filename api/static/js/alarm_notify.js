// New-alarm (and new sensor warning) notification: a short beep pattern made with the Web Audio API (no audio file;
// longer and louder for a higher level), the nav badge flashing and the document title
// blinking "【新报警】" until the tab is focused again or the alarm view is opened.  The
// sound can be muted from the header (remembered per user in localStorage).  Browsers allow
// audio after a user gesture only: the AudioContext starts on the first click or key press
// after login, and a blocked context stays silent.  window.__alarmSounds counts the sounds started.
const TITLE_MARK = "【新报警】";

// 1 = the quietest, 3 = the most urgent: a GB28181 priority (1 highest .. 4), else medium.
export function severity(level) {
  const n = Number(level);
  if (!Number.isFinite(n) || n <= 0) return 2;
  return n <= 1 ? 3 : n === 2 ? 2 : 1;
}

// A sensor warning's level as a priority: red the most urgent, blue the least.
export function warningPriority(level) {
  return { red: 1, orange: 2, yellow: 3, blue: 4 }[level] ?? 3;
}

const PATTERNS = { // [beeps, seconds each, gain, frequency]
  1: [1, 0.18, 0.15, 660],
  2: [2, 0.22, 0.3, 880],
  3: [3, 0.32, 0.5, 988],
};

export class AlarmNotifier {
  constructor(toggle, badge) {
    this.toggle = toggle; // <input type=checkbox>: checked = sound on
    this.badge = badge;
    this.ctx = null;
    this.user = "";
    this.blinkTimer = null;
    this.title = document.title;
    window.__alarmSounds = window.__alarmSounds || 0;
    this.unlock = () => this.startAudio();
    this.toggle.addEventListener("change", () => {
      if (this.user) localStorage.setItem(this.key(), this.toggle.checked ? "on" : "off");
    });
    const back = () => { if (!document.hidden && document.hasFocus()) this.seen(false); };
    window.addEventListener("focus", back);
    document.addEventListener("visibilitychange", back);
  }

  key() { return "vms.alarmSound." + this.user; }

  get muted() { return !this.toggle.checked; }

  // After login: the user's mute setting, and the audio unlocked by the next gesture.
  start(username) {
    this.user = username;
    this.toggle.checked = localStorage.getItem(this.key()) !== "off";
    this.toggle.closest("label").hidden = false;
    document.addEventListener("click", this.unlock, true);
    document.addEventListener("keydown", this.unlock, true);
  }

  stop() {
    this.user = "";
    this.toggle.closest("label").hidden = true;
    document.removeEventListener("click", this.unlock, true);
    document.removeEventListener("keydown", this.unlock, true);
    this.seen(true);
    if (this.ctx) { this.ctx.close().catch(() => {}); this.ctx = null; }
  }

  startAudio() {
    document.removeEventListener("click", this.unlock, true);
    document.removeEventListener("keydown", this.unlock, true);
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      this.ctx = this.ctx || new Ctx();
      if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    } catch (_) { this.ctx = null; } // blocked or unsupported: silent
  }

  // A new alarm arrived: sound (unless muted or not unlocked), badge flash, title blink.
  alarm(level, viewingAlarms) {
    if (!this.user) return;
    this.beep(severity(level));
    if (this.badge) {
      this.badge.classList.remove("badge-flash");
      void this.badge.offsetWidth; // restart the animation
      this.badge.classList.add("badge-flash");
    }
    if (!(viewingAlarms && document.hasFocus() && !document.hidden)) this.blink();
  }

  // A sensor warning opened or escalated: the same sound by its level and the title blink;
  // the warnings badge (not the alarms one) says where it is.
  warning(level, viewingWarnings) {
    if (!this.user) return;
    this.beep(severity(warningPriority(level)));
    if (!(viewingWarnings && document.hasFocus() && !document.hidden)) this.blink();
  }

  beep(sev) {
    const ctx = this.ctx;
    if (this.muted || !ctx || ctx.state !== "running") return;
    const [count, len, gain, freq] = PATTERNS[sev] || PATTERNS[2];
    try {
      const t0 = ctx.currentTime + 0.02;
      for (let i = 0; i < count; i++) {
        const at = t0 + i * len * 1.6;
        const osc = ctx.createOscillator(), amp = ctx.createGain();
        osc.type = "square";
        osc.frequency.value = freq;
        amp.gain.setValueAtTime(0.0001, at);
        amp.gain.exponentialRampToValueAtTime(gain, at + 0.02);
        amp.gain.setValueAtTime(gain, at + len - 0.04);
        amp.gain.exponentialRampToValueAtTime(0.0001, at + len);
        osc.connect(amp).connect(ctx.destination);
        osc.start(at);
        osc.stop(at + len + 0.02);
      }
      window.__alarmSounds += 1;
    } catch (_) { /* audio refused: say nothing */ }
  }

  blink() {
    if (this.blinkTimer) return;
    if (!document.title.startsWith(TITLE_MARK)) this.title = document.title;
    let on = false;
    const flip = () => { on = !on; document.title = on ? TITLE_MARK + this.title : this.title; };
    flip();
    this.blinkTimer = setInterval(flip, 1000);
  }

  // The user looked: the alarm view was opened (also stops the badge) or the tab came back.
  seen(openedAlarms = true) {
    if (this.blinkTimer) { clearInterval(this.blinkTimer); this.blinkTimer = null; document.title = this.title; }
    if (openedAlarms && this.badge) this.badge.classList.remove("badge-flash");
  }
}
