// Shared by both pages. Everything from a host arrives as JSON data and is put on the page
// with textContent only: a metric name, a reason or a log line can never become markup.
"use strict";
const tether = (() => {
  const token = document.querySelector('meta[name="tether-token"]').content;
  const STATES = ["PENDING", "SETUP", "RUNNING", "BACKING_UP", "RESTARTING", "STALLED", "SUCCEEDED",
                  "FAILED", "STOPPED", "LOST", "UNREACHABLE", "LAUNCHING"];

  async function api(path) {
    const r = await fetch(path, {credentials: "same-origin", cache: "no-store"});
    const body = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    return body;
  }

  async function post(path, body) {
    const r = await fetch(path, {method: "POST", credentials: "same-origin", cache: "no-store",
      headers: {"Content-Type": "application/json", "X-Tether-Token": token},
      body: JSON.stringify(body || {})});
    const answer = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
    if (!r.ok) throw new Error(answer.error || `HTTP ${r.status}`);
    return answer;
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v == null ? "" : String(v);
      else if (k === "cls") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  function stateBadge(state) {
    const known = STATES.includes(state) ? state : "OTHER";
    return el("span", {cls: `state s-${known}`, text: state});
  }

  function ago(s) {
    if (s == null) return "-";
    if (s < 60) return `${Math.round(s)}s ago`;
    if (s < 3600) return `${Math.round(s / 60)}m ago`;
    if (s < 172800) return `${(s / 3600).toFixed(1)}h ago`;
    return `${Math.round(s / 86400)}d ago`;
  }

  function dur(s) {
    if (s == null) return "-";
    if (s < 90) return `${Math.round(s)}s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function num(v) {
    if (typeof v !== "number") return v == null ? "-" : String(v);
    return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(+v.toPrecision(4));
  }

  function money(v, digits) { return v == null ? "-" : `$${v.toFixed(digits)}`; }

  function problem(text) {
    const p = document.getElementById("problem");
    p.hidden = !text;
    p.textContent = text || "";
  }

  function stamp() {
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  return {token, api, post, el, stateBadge, ago, dur, num, money, problem, stamp};
})();
