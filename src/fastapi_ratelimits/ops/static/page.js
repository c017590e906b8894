// The operator's page of fastapi-ratelimits. Every call goes to the admin API next to this
// page with the bearer token, kept in sessionStorage (this tab only). Everything shown is
// set with textContent or drawn on a canvas: nothing that came from a client is parsed as HTML.
"use strict";
(() => {
  const TOKEN_KEY = "fastapi-ratelimits.admin-token";
  const OUTCOMES = ["allowed", "limited", "shadow_limited", "error"];
  const LABELS = { allowed: "allowed", limited: "limited", shadow_limited: "shadow-limited", error: "errors" };
  const POINTS = 60; // seconds of history in each chart
  const TOP_N = 5;
  const $ = (id) => document.getElementById(id);

  let token = sessionStorage.getItem(TOKEN_KEY);
  let timer = null;
  let ticks = 0;
  let rulesHash = null;
  let last = null; // the previous /decisions reading: {at, pid, rules}
  const series = new Map(); // rule -> {outcome: [rate, ...]}
  const cards = new Map(); // rule -> elements of its card

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  class Unauthorized extends Error {}

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + token };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.status === 401) throw new Unauthorized("the token was refused (401)");
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const detail = data && data.detail !== undefined ? data.detail : res.statusText;
      throw new Error(res.status + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
    }
    return data;
  }

  function say(text, isError) {
    const m = $("message");
    m.textContent = text;
    m.className = isError ? "error" : "";
  }

  // -- signing in and out ----------------------------------------------------------------

  function showLogin(error) {
    stop();
    $("app").hidden = true;
    $("reload").hidden = $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = error || "";
    $("loaded").textContent = "";
  }

  function forget(error) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(error);
  }

  async function signIn(candidate) {
    token = candidate;
    try {
      const rules = await api("GET", "rules");
      sessionStorage.setItem(TOKEN_KEY, candidate);
      $("login").hidden = true;
      $("app").hidden = false;
      $("reload").hidden = $("logout").hidden = false;
      $("token").value = "";
      showRules(rules);
      start();
    } catch (e) {
      forget(e instanceof Unauthorized ? "Wrong token: " + e.message : "Cannot reach the admin API: " + e.message);
    }
  }

  function failed(e) {
    if (e instanceof Unauthorized) forget("The token is no longer accepted: " + e.message);
    else say(e.message, true);
  }

  // -- the rules ---------------------------------------------------------------------------

  function limitsOf(rule) {
    if (rule.limits && rule.limits.length) return rule.limits.join(", ");
    if (rule.limit) return String(rule.limit);
    if (rule.capacity !== null && rule.capacity !== undefined) return rule.capacity + " @ " + rule.fill_rate + "/s";
    return "";
  }

  function showRules(data) {
    const when = new Date(data.loaded_at_epoch * 1000).toLocaleString();
    $("loaded").textContent = "rules from " + data.source + " (hash " + data.hash + "), loaded " + when;
    const err = data.last_reload_error;
    $("reload-error").hidden = !err;
    $("reload-error-text").textContent = err || "";
    if (data.hash === rulesHash) return;
    rulesHash = data.hash;
    const rules = data.config.rules || [];
    const defaults = data.config.defaults || {};
    const select = $("lookup-rule");
    const chosen = select.value;
    select.replaceChildren(...rules.map((r) => el("option", { value: r.name, textContent: r.name })));
    if (rules.some((r) => r.name === chosen)) select.value = chosen;
    const box = $("rules");
    const keep = new Set(rules.map((r) => r.name));
    for (const name of [...cards.keys()]) if (!keep.has(name)) { cards.delete(name); series.delete(name); }
    box.replaceChildren(...rules.map((r) => card(r, defaults)));
  }

  function card(rule, defaults) {
    const shadow = (rule.mode || "enforce") === "shadow";
    const tags = [
      el("span", { class: "tag" }, rule.algorithm || defaults.algorithm || ""),
      el("span", { class: "tag" }, "scope " + (rule.scope || defaults.scope || "")),
      el("span", { class: "tag" }, limitsOf(rule)),
    ];
    if (shadow) tags.push(el("span", { class: "tag shadow" }, "shadow"));
    const resetRule = el("button", { type: "button", class: "danger reset-rule", textContent: "Reset rule" });
    resetRule.addEventListener("click", () => confirmReset(rule.name, null));
    const canvas = el("canvas", { class: "chart", width: 360, height: 96 });
    const rates = el("div", { class: "rates" });
    const cells = {};
    rates.append(el("span", { class: "muted" }, "outcome"), el("span", { class: "muted num" }, "per s"),
      el("span", { class: "muted num" }, "total"));
    for (const o of OUTCOMES) {
      cells[o] = { rate: el("span", { class: "num rate-" + o }, "0"), total: el("span", { class: "num total-" + o }, "0") };
      rates.append(el("span", {}, el("span", { class: "swatch " + o }), LABELS[o]), cells[o].rate, cells[o].total);
    }
    const tables = {};
    const tops = el("div", { class: "tops" });
    for (const [outcome, title] of [["limited", shadow ? "Top would-be-limited callers" : "Top limited callers"],
      ["allowed", "Top allowed callers"]]) {
      const body = el("tbody");
      const summary = el("div", { class: "muted top-summary-" + outcome });
      tables[outcome] = { body, summary };
      tops.append(el("div", { class: "top-" + outcome }, el("h3", {}, title), el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", { class: "num" }, "requests"),
          el("th", { class: "num" }, "± error"), el("th", {}, ""))), body), summary));
    }
    const node = el("section", { class: "card rule", dataset: { rule: rule.name } },
      el("div", { class: "rule-head" }, el("h2", {}, rule.name), ...tags, el("span", { class: "spacer" }), resetRule),
      el("div", { class: "chart-row" }, canvas, rates), tops);
    cards.set(rule.name, { canvas, cells, tables });
    if (!series.has(rule.name)) series.set(rule.name, Object.fromEntries(OUTCOMES.map((o) => [o, []])));
    draw(rule.name);
    return node;
  }

  // -- decisions per second ----------------------------------------------------------------

  function showDecisions(now) {
    const prev = last;
    last = now;
    for (const [name, c] of cards) {
      const counts = (now.rules || {})[name] || {};
      const before = prev && prev.pid === now.pid ? (prev.rules || {})[name] || {} : null;
      const dt = prev ? now.at - prev.at : 0;
      const s = series.get(name);
      for (const o of OUTCOMES) {
        const total = counts[o] || 0;
        c.cells[o].total.textContent = String(total);
        if (before && dt > 0) {
          const rate = Math.max(0, (total - (before[o] || 0)) / dt);
          c.cells[o].rate.textContent = rate >= 10 ? rate.toFixed(0) : rate.toFixed(1);
          s[o].push(rate);
          if (s[o].length > POINTS) s[o].shift();
        }
      }
      draw(name);
    }
  }

  function draw(name) {
    const c = cards.get(name);
    const s = series.get(name);
    if (!c || !s) return;
    const cv = c.canvas;
    cv.dataset.points = String(s.allowed.length);
    const g = cv.getContext("2d");
    const w = cv.width, h = cv.height, pad = 14;
    g.clearRect(0, 0, w, h);
    let max = 1;
    for (const o of OUTCOMES) for (const v of s[o]) if (v > max) max = v;
    g.strokeStyle = "#e3e7ec";
    g.lineWidth = 1;
    for (let i = 0; i <= 2; i++) {
      const y = pad + ((h - 2 * pad) * i) / 2;
      g.beginPath(); g.moveTo(0, y); g.lineTo(w, y); g.stroke();
    }
    g.fillStyle = "#5f6b7a";
    g.font = "10px sans-serif";
    g.fillText((max >= 10 ? max.toFixed(0) : max.toFixed(1)) + "/s", 4, 10);
    g.fillText(POINTS + " s", w - 26, h - 3);
    const styles = getComputedStyle(document.documentElement);
    for (const o of OUTCOMES) {
      const v = s[o];
      if (v.length < 2) continue;
      g.strokeStyle = styles.getPropertyValue("--" + o).trim() || "#000";
      g.lineWidth = 2;
      g.beginPath();
      v.forEach((rate, i) => {
        const x = w - (v.length - 1 - i) * (w / (POINTS - 1));
        const y = h - pad - (rate / max) * (h - 2 * pad);
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    }
  }

  // -- top callers -------------------------------------------------------------------------

  function showTop(data) {
    const minutes = (data.window_seconds / 60).toFixed(1);
    $("window").textContent = "Top callers over the last " + minutes + " min (" + data.epochs + " epochs of " +
      data.epoch_seconds + " s, " + data.counters + " counters per rule; " +
      (data.shared ? "all processes on this Redis" : "this process only") + "). Counts are upper bounds; " +
      "the true count is at least count − error." + (data.dropped ? " Hits not counted: " + data.dropped + "." : "");
    for (const row of data.rules) {
      const c = cards.get(row.rule);
      if (!c) continue;
      for (const outcome of ["limited", "allowed"]) {
        const part = row[outcome];
        const t = c.tables[outcome];
        const rows = part.callers.map((e) => {
          const reset = el("button", { type: "button", class: "danger reset-key", textContent: "Reset" });
          if (e.hashed) {
            reset.disabled = true;
            reset.title = "a hashed identity: look it up by its value to reset it";
          } else {
            reset.addEventListener("click", () => confirmReset(row.rule, e.key));
          }
          return el("tr", { dataset: { key: e.key } }, el("td", { class: "key" }, e.key),
            el("td", { class: "num count" }, e.count), el("td", { class: "num" }, e.error), el("td", {}, reset));
        });
        if (!rows.length) rows.push(el("tr", {}, el("td", { class: "empty", colSpan: 4 }, "none")));
        t.body.replaceChildren(...rows);
        t.summary.textContent = part.total + " requests, " + part.tracked + " callers tracked";
      }
    }
  }

  // -- actions -----------------------------------------------------------------------------

  let pendingReset = null;

  function confirmReset(rule, key) {
    pendingReset = { rule, key };
    $("confirm-text").textContent = key === null
      ? "Reset every counter of rule " + rule + "?"
      : "Reset the counters of rule " + rule + " for " + key + "?";
    $("confirm").showModal();
  }

  $("confirm").addEventListener("close", async () => {
    const what = pendingReset;
    pendingReset = null;
    if (!what || $("confirm").returnValue !== "ok") return;
    const body = what.key === null ? { rule: what.rule } : { rule: what.rule, key: what.key };
    try {
      const out = await api("POST", "reset", body);
      say("Reset " + what.rule + (what.key === null ? "" : " for " + what.key) + ": " + out.removed +
        " key(s) removed.", false);
      tick();
    } catch (e) { failed(e); }
  });

  $("reload").addEventListener("click", async () => {
    try {
      const out = await api("POST", "reload");
      say(out.ok ? (out.changed ? "Reloaded: new rules in force (hash " + out.hash + ")." : "Reloaded: no change.")
        : "Reload refused, the previous rules stay: " + out.error, !out.ok);
      showRules(await api("GET", "rules"));
    } catch (e) { failed(e); }
  });

  $("logout").addEventListener("click", () => forget(""));

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    if (value) signIn(value);
  });

  $("lookup-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const rule = $("lookup-rule").value;
    const key = $("lookup-key").value.trim();
    if (!rule || !key) return;
    const out = $("lookup-result");
    try {
      const data = await api("GET", "status?" + new URLSearchParams({ rule, key }).toString());
      const rows = data.limits.map((l) => el("tr", {}, el("td", {}, l.name), el("td", { class: "num" }, l.limit),
        el("td", { class: "num" }, l.window_seconds + " s"), el("td", { class: "num remaining" }, l.remaining),
        el("td", { class: "num" }, l.reset_seconds + " s")));
      out.replaceChildren(el("p", {}, "rule ", el("strong", {}, data.rule), ", key ",
        el("code", { class: "status-key" }, data.key)),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "limit"), el("th", { class: "num" }, "quota"),
        el("th", { class: "num" }, "window"), el("th", { class: "num" }, "remaining"),
        el("th", { class: "num" }, "reset in"))), el("tbody", {}, ...rows)));
    } catch (e) {
      if (e instanceof Unauthorized) failed(e);
      else out.replaceChildren(el("p", { class: "error" }, e.message));
    }
  });

  $("lookup-reset").addEventListener("click", () => {
    const rule = $("lookup-rule").value;
    const key = $("lookup-key").value.trim();
    if (rule && key) confirmReset(rule, key);
  });

  // -- polling -----------------------------------------------------------------------------

  async function tick() {
    if (!token) return;
    try {
      const [decisions, top] = await Promise.all([api("GET", "decisions"), api("GET", "top?n=" + TOP_N)]);
      showDecisions(decisions);
      showTop(top);
      if (++ticks % 5 === 0) showRules(await api("GET", "rules"));
    } catch (e) { failed(e); }
  }

  function start() {
    stop();
    tick();
    timer = setInterval(tick, 1000);
  }

  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }

  if (token) signIn(token); else showLogin("");
})();
