// Curves drawn by uPlot (shipped in static/uplot, no CDN). One small chart per metric; the
// run's moments (restarts, stalls, backups, deadline, end) as dashed lines across each.
"use strict";
const charts = (() => {
  const MARK = {restart: "#d97706", stall: "#dc2626", backup: "#16a34a", deadline: "#7c3aed", end: "#475569"};
  const STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7];
  const live = {};           // group/name -> {plot, axis}
  window.tetherCharts = live;  // read back by the tests

  function markerPlugin(state) {
    return {hooks: {draw: [u => {
      const ctx = u.ctx, {left, top, width, height} = u.bbox;
      ctx.save();
      ctx.lineWidth = 1.5 * devicePixelRatio;
      ctx.setLineDash([5 * devicePixelRatio, 4 * devicePixelRatio]);
      for (const m of state.markers) {
        const v = state.axis === "step" ? m.step : m.time;
        if (v == null) continue;
        const x = Math.round(u.valToPos(v, "x", true));
        if (x < left || x > left + width) continue;
        ctx.strokeStyle = MARK[m.kind] || "#64748b";
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
      }
      ctx.restore();
    }]}};
  }

  // A log scale only for curves that are all above zero.
  const loggable = data => data[1].every(v => v == null || v > 0);

  function make(box, name, data, axis, markers, log) {
    const state = {axis, markers};
    const opts = {
      width: Math.max(280, box.clientWidth - 8), height: 220, title: name,
      scales: {x: {time: axis === "time"}, y: {distr: log ? 3 : 1}},
      series: [{label: axis}, {label: name, stroke: "#2563eb", width: 1.5, spanGaps: true}],
      axes: [axis === "step" ? {incrs: STEPS} : {}, {size: 60}],
      legend: {live: true},
      plugins: [markerPlugin(state)],
    };
    return {plot: new uPlot(opts, data, box), axis, state};
  }

  // curves: {name: {step: [xs, ys], time: [xs, ys]}}; log: y on a log scale where it can be
  function draw(container, group, curves, axis, markers, log) {
    const seen = new Set();
    for (const [name, byAxis] of Object.entries(curves)) {
      const ax = byAxis[axis] ? axis : "time";
      const data = byAxis[ax];
      if (!data || data[0].length === 0) continue;
      const key = `${group}/${name}`;
      seen.add(key);
      const lg = !!log && loggable(data);
      let c = live[key];
      if (c && (c.axis !== ax || c.log !== lg)) { c.plot.destroy(); c.box.remove(); c = null; }
      if (!c) {
        const box = tether.el("div", {cls: "chart", "data-metric": name});
        container.append(box);
        c = make(box, name, data, ax, markers, lg);
        c.box = box;
        c.log = lg;
        live[key] = c;
      } else {
        c.state.markers = markers;
        c.plot.setData(data);
      }
      c.box.dataset.points = String(data[0].length);
    }
    for (const key of Object.keys(live)) {
      if (key.startsWith(`${group}/`) && !seen.has(key)) { live[key].plot.destroy(); live[key].box.remove(); delete live[key]; }
    }
    return seen.size;
  }

  function legend(p, markers) {
    const kinds = [...new Set(markers.map(m => m.kind))];
    p.replaceChildren(...kinds.map(k => tether.el("span", {cls: "mk", style: `border-color:${MARK[k] || "#64748b"}`,
      text: `${k} (${markers.filter(m => m.kind === k).length})`})));
  }

  return {draw, legend};
})();
