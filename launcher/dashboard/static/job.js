// One job: its curves, host resources, live log tail, backups, events, spec and actions.
"use strict";
(() => {
  const {api, post, el, stateBadge, ago, dur, num, money, problem, stamp} = tether;
  const job = decodeURIComponent(location.pathname.split("/").pop());
  const $ = id => document.getElementById(id);
  let axis = "step", log = false, detail = null, ended = false, afterEnd = 0;
  let node = null;  // a multi-node job: the node the page shows (null: the job's home, node 0)
  const at = (path, sep) => node == null ? path : `${path}${sep}node=${node}`;

  function facts(j) {
    const parts = [`host ${j.host}`, `step ${j.step == null ? "-" : j.step}` + (j.max_steps ? ` of ${j.max_steps}` : "")];
    if (j.eta_s != null) parts.push(`ETA ${dur(j.eta_s)}`);
    parts.push(`heartbeat ${ago(j.heartbeat_age_s)}`);
    if (j.loss_name) parts.push(`${j.loss_name} ${num(j.loss)}`);
    parts.push(`last backup ${j.backup ? ago(j.backup_age_s) : "none"}`);
    if (j.price_per_hour != null) parts.push(`${money(j.price_per_hour, 3)}/h, spent ${money(j.spend_usd, 2)}`);
    if (j.attempt) parts.push(`attempt ${j.attempt}`);
    return parts.join(" · ");
  }

  function showHead(j) {
    document.title = `tether · ${j.name}`;
    $("name").textContent = j.name;
    $("jobid").textContent = j.id;
    $("state").replaceChildren(stateBadge(j.state));
    $("reason").textContent = [j.reason, ...(j.warnings || [])].filter(Boolean).join(" · ");
    $("facts").textContent = facts(j);
    showNodes(j.nodes);
    ended = !!j.terminal;
  }

  function showNodes(nodes) {  // a multi-node job: one row per node, every string as text
    const table = $("nodes");
    table.hidden = !Array.isArray(nodes) || nodes.length === 0;
    $("nodepick").hidden = table.hidden;
    if (table.hidden) return;
    const pick = $("node");
    if (node == null) node = 0;  // a multi-node job: always a node (a pull lands in its node-K/)
    if (pick.options.length !== nodes.length) {
      pick.replaceChildren(...nodes.map((n, k) => el("option", {value: String(k), text: `node ${k}`})));
      pick.value = String(node);
    }
    const rows = nodes.map(n => el("tr", {"data-node": String(Number(n.node)), cls: Number(n.node) === node ? "picked" : ""},
      el("td", {text: `node ${Number(n.node)}`}), el("td", {text: n.host}),
      el("td", {}, stateBadge(String(n.state))), el("td", {text: n.step == null ? "-" : n.step}),
      el("td", {text: n.attempt == null ? "-" : n.attempt}), el("td", {text: ago(n.heartbeat_age_s)}),
      el("td", {text: n.reason || ""})));
    table.querySelector("tbody").replaceChildren(...rows);
  }

  function showEvents(events) {
    const rows = events.slice().reverse().map(e => {
      const details = Object.entries(e).filter(([k]) => k !== "time" && k !== "event")
        .map(([k, v]) => `${k}=${v}`).join("  ");
      return el("tr", {}, el("td", {text: new Date(e.time * 1000).toLocaleString()}),
                el("td", {text: e.event}), el("td", {text: details}));
    });
    document.querySelector("#events tbody").replaceChildren(...rows);
  }

  function drawAll() {
    if (!detail) return;
    const n = charts.draw($("charts"), "metrics", detail.curves, axis, detail.markers, log);
    $("nocharts").hidden = n > 0;
    charts.legend($("legend"), detail.markers);
    const r = charts.draw($("resources"), "host", detail.resources, "time", []);
    $("noresources").hidden = r > 0;
  }

  async function loadDetail() {
    const asked = node;
    try {
      const got = await api(at(`/api/job/${encodeURIComponent(job)}`, "?"));
      if (asked !== node) return;  // the page moved to another node meanwhile
      detail = got;
      showHead(detail.job);
      drawAll();
      showEvents(detail.events);
      $("spec").textContent = detail.spec ? JSON.stringify(detail.spec, null, 2) : "(not recorded)";
      problem(detail.error ? `the host did not answer: ${detail.error}` : "");
      document.body.dataset.loaded = "1";
      stamp();
    } catch (e) {
      if (asked === node) problem(e.message);
    }
  }

  async function refresh() {
    await loadDetail();
    setTimeout(refresh, detail && detail.behind ? 200 : ended ? 10000 : 2000);
  }

  async function loadLog() {
    const pre = $("log"), asked = node;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    try {
      const {text} = await api(at(`/api/job/${encodeURIComponent(job)}/log?file=${$("logfile").value}&tail=200`, "&"));
      if (asked !== node) return;
      pre.textContent = text;
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    } catch (e) {
      if (asked === node) pre.textContent = `(log not available: ${e.message})`;
    }
  }

  async function refreshLog() {
    await loadLog();
    afterEnd = ended ? afterEnd + 1 : 0;  // the lines a job wrote as it ended, then slower
    setTimeout(refreshLog, afterEnd > 2 ? 10000 : 2000);
  }

  function showBackups(items) {
    const rows = items.slice().reverse().map(b => el("tr", {},
      el("td", {text: b.name}), el("td", {text: b.step == null ? "-" : b.step}),
      el("td", {text: b.created == null ? "-" : ago(Date.now() / 1000 - b.created)}),
      el("td", {text: `${(b.size / 1e6).toFixed(1)} MB`}), el("td", {text: b.files}),
      el("td", {cls: b.verified === true ? "ok" : b.verified === false ? "bad" : "muted",
                text: b.verified === true ? "yes" : b.verified === false ? `no: ${b.problem}` : "sealed (not re-checked)"})));
    document.querySelector("#backups tbody").replaceChildren(...rows);
  }

  async function loadBackups() {
    const asked = node;
    try {
      const {backups} = await api(at(`/api/job/${encodeURIComponent(job)}/backups`, "?"));
      if (asked === node) showBackups(backups);
    } catch (e) { /* shown by refresh */ }
  }

  async function refreshBackups() {
    await loadBackups();
    setTimeout(refreshBackups, 15000);
  }

  async function act(name, question, body) {
    if (question && !confirm(question)) return;
    $("said").textContent = `${name}…`;
    try {
      const asked = node;
      const answer = await post(`/api/job/${encodeURIComponent(job)}/${name}`, body);
      $("said").textContent = answer.message || "done";
      if (answer.backups && asked === node) showBackups(answer.backups);  // not under another node's name
    } catch (e) {
      $("said").textContent = `${name} failed: ${e.message}`;
    }
  }

  $("stop").onclick = () => act("stop", `Stop job ${job}? It checkpoints, takes a final backup, and stops.`);
  $("resume").onclick = () => act("resume", `Resume job ${job} from its newest verified backup?`);
  const onNode = () => node == null ? {} : {node};
  $("pull").onclick = () => act("pull", node == null ? `Pull job ${job}'s outputs into the folder tether ui runs in?`
    : `Pull node ${node}'s outputs of job ${job} into node-${node}/ of the folder tether ui runs in?`, onNode());
  $("publish").onclick = () => {
    const repo = prompt("Publish to which Hugging Face repo (user/name)? It is created private.");
    if (repo) act("publish", null, {repo, private: true});
  };
  $("verify").onclick = () => act("verify", null, onNode());
  $("node").onchange = () => {  // everything of one node: cleared, then asked at once
    node = Number($("node").value);
    for (const tr of document.querySelectorAll("#nodes tbody tr")) tr.classList.toggle("picked", Number(tr.dataset.node) === node);
    detail = null;
    $("log").textContent = "";
    document.querySelector("#backups tbody").replaceChildren();
    charts.draw($("charts"), "metrics", {}, axis, [], log);
    charts.draw($("resources"), "host", {}, "time", []);
    loadDetail();
    loadLog();
    loadBackups();
  };
  $("logfile").onchange = () => { $("log").textContent = ""; };
  $("log-y").onchange = () => { log = $("log-y").checked; drawAll(); };
  for (const radio of document.querySelectorAll('input[name="x"]')) {
    radio.onchange = () => { axis = radio.value; drawAll(); };
  }
  refresh();
  refreshLog();
  refreshBackups();
})();
