// Helpers shared by the pages: fetching, building elements, times, charts (uPlot, local).
"use strict";

const MG = {
  async json(url) {
    const resp = await fetch(url);
    if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
    return resp.json();
  },
  el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
    return node;
  },
  time(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  },
  epochTime(seconds) {
    return new Date(seconds * 1000).toLocaleString();
  },
  kwh(x) {
    return x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(2) : x.toFixed(3);
  },
  lastPathPart() {
    return decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  },
  PHASE_COLOURS: ["#c62828", "#f9a825", "#1565c0"],

  // One chart per group of quantities; `pf` is derived from P / (V·I) per phase.
  async plots(container, meter, startEpoch, endEpoch, markEpoch) {
    container.replaceChildren();
    const fields = "v1,v2,v3,i1,i2,i3,in,p1,p2,p3";
    const url = `/api/meters/${encodeURIComponent(meter)}/series?fields=${fields}` +
      `&start=${startEpoch}&end=${endEpoch}&points=600`;
    const series = await MG.json(url);
    if (!series.ts.length) {
      container.append(MG.el("p", {class: "muted"}, "no readings stored for this window"));
      return 0;
    }
    const v = series.values;
    const pf = [1, 2, 3].map((k) => v[`p${k}`].map((p, j) => {
      const s = v[`v${k}`][j] * v[`i${k}`][j];
      return p == null || !s ? null : p / s;
    }));
    const groups = [
      {title: "Voltage (V)", data: [v.v1, v.v2, v.v3], labels: ["V1", "V2", "V3"]},
      {title: "Current (A)", data: [v.i1, v.i2, v.i3, v.in], labels: ["I1", "I2", "I3", "In"]},
      {title: "Active power (W)", data: [v.p1, v.p2, v.p3], labels: ["P1", "P2", "P3"]},
      {title: "Power factor", data: pf, labels: ["PF1", "PF2", "PF3"]},
    ];
    const width = Math.max(320, Math.min(container.clientWidth || 900, 1100));
    let drawn = 0;
    for (const g of groups) {
      const keep = g.data.map((col) => col.some((x) => x != null));
      if (!keep.some(Boolean)) continue;
      const box = MG.el("figure", {class: "chart"}, MG.el("figcaption", {}, g.title));
      container.append(box);
      const cols = [series.ts];
      const spec = [{}];
      g.data.forEach((col, k) => {
        if (!keep[k]) return;
        cols.push(col);
        spec.push({label: g.labels[k], stroke: MG.PHASE_COLOURS[k] || "#555", width: 1.5});
      });
      const opts = {
        width, height: 180, series: spec, scales: {x: {time: true}},
        axes: [{}, {size: 70}],
        hooks: markEpoch ? {draw: [(u) => {
          const x = u.valToPos(markEpoch, "x", true);
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#6a1b9a";
          ctx.setLineDash([4, 4]);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.restore();
        }]} : {},
      };
      new uPlot(opts, cols, box);
      drawn += 1;
    }
    return drawn;
  },
};
