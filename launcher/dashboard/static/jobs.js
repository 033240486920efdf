// The jobs page: every job, refreshed every few seconds without reloading the page.
"use strict";
(() => {
  const {api, el, stateBadge, ago, dur, num, money, problem, stamp} = tether;
  const body = document.querySelector("#jobs tbody");

  function row(j) {
    const now = Date.now() / 1000;
    const link = el("a", {href: `/job/${encodeURIComponent(j.id)}`, text: j.id});
    const state = el("td", {}, stateBadge(j.state));
    if (j.reason) state.title = j.reason;
    const loss = j.loss_name ? el("span", {}, el("span", {cls: "spark", text: j.spark || ""}),
                                  el("span", {text: ` ${num(j.loss)}`})) : "-";
    const eta = j.eta_s != null ? dur(j.eta_s) + (j.max_steps ? ` to ${j.max_steps}` : "") : "-";
    const tr = el("tr", {"data-job": j.id},
      el("td", {}, link), el("td", {text: j.name}), el("td", {text: j.host === j.provider ? j.host : `${j.provider} · ${j.host}`}), state,
      el("td", {text: j.step == null ? "-" : j.step}), el("td", {text: eta}),
      el("td", {text: ago(j.heartbeat_age_s)}), el("td", {}, loss),
      el("td", {text: j.backup ? ago(j.backup_age_s) : "none"}),
      el("td", {text: money(j.price_per_hour, 3)}), el("td", {text: money(j.spend_usd, 2)}),
      el("td", {text: ago(now - j.created)}));
    if (j.asking) tr.className = "asking";  // the registry's last word, until the host answers
    return tr;
  }

  async function refresh() {
    try {
      const {jobs} = await api("/api/jobs");
      body.replaceChildren(...jobs.map(row));
      document.getElementById("empty").hidden = jobs.length > 0;
      document.body.dataset.loaded = "1";
      problem("");
      stamp();
    } catch (e) {
      problem(`cannot read the jobs: ${e.message}`);
    }
  }

  refresh();
  setInterval(refresh, 2000);
})();
