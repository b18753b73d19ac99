/* The page's charts, drawn as SVG: the score gauge, the trend line and the points waterfall.
 * Every chart has a text equivalent (an aria-label, and the numbers written beside it), and
 * colour is never the only signal: bands are named, points carry a sign and an arrow. */
"use strict";
(function (global) {
  const NS = "http://www.w3.org/2000/svg";
  const BANDS = [ // lower bound, API name, CSS class
    [0, "needs improvement", "band-0"], [550, "fair", "band-1"], [600, "good", "band-2"],
    [700, "very good", "band-3"], [750, "excellent", "band-4"],
  ];
  const bandClass = (band) => (BANDS.find((b) => b[1] === band) || BANDS[0])[2];

  function svg(name, attrs, ...children) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v; else node.setAttribute(k, String(v));
    }
    children.forEach((c) => c && node.append(c));
    return node;
  }

  /** A half-ring from 300 to 900 points, one coloured arc per band, a needle at the score. */
  function gauge(score, band, label) {
    const lo = 300, hi = 900, cx = 120, cy = 122, r = 92;
    const at = (v) => {
      const a = Math.PI * (1 - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo));
      return [cx + r * Math.cos(a), cy - r * Math.sin(a), a];
    };
    const root = svg("svg", { viewBox: "0 0 240 150", role: "img", "aria-label": label, class: "gauge" },
      svg("title", { text: label }));
    const edges = [lo, 550, 600, 700, 750, hi];
    for (let i = 0; i < 5; i++) {
      const [x1, y1] = at(edges[i]), [x2, y2] = at(edges[i + 1]);
      root.append(svg("path", { d: `M${x1.toFixed(2)},${y1.toFixed(2)} A${r},${r} 0 0 1 ${x2.toFixed(2)},${y2.toFixed(2)}`,
        class: `arc ${BANDS[i][2]}${BANDS[i][1] === band ? " current" : ""}`, fill: "none" }));
    }
    const [, , a] = at(score);
    const nx = cx + (r - 22) * Math.cos(a), ny = cy - (r - 22) * Math.sin(a);
    const ox = cx + (r + 12) * Math.cos(a), oy = cy - (r + 12) * Math.sin(a);
    root.append(
      svg("line", { x1: nx.toFixed(2), y1: ny.toFixed(2), x2: ox.toFixed(2), y2: oy.toFixed(2), class: "needle" }),
      svg("text", { x: cx, y: cy - 18, class: "gauge-score", "text-anchor": "middle", text: String(Math.floor(score)) }),
      svg("text", { x: 22, y: 146, class: "gauge-tick", "text-anchor": "middle", text: String(lo) }),
      svg("text", { x: 218, y: 146, class: "gauge-tick", "text-anchor": "middle", text: String(hi) }),
    );
    return root;
  }

  /** Past scores as a line over time, with the band thresholds as dashed lines. */
  function trend(points, label) {
    const W = 320, H = 150, L = 34, R = 10, T = 10, B = 26;
    const scores = points.map((p) => p.score);
    const lo = Math.floor((Math.min(...scores) - 30) / 10) * 10, hi = Math.ceil((Math.max(...scores) + 30) / 10) * 10;
    const times = points.map((p) => Date.parse(p.as_of));
    const t0 = Math.min(...times), t1 = Math.max(...times);
    const x = (t) => (t1 === t0 ? (L + W - R) / 2 : L + ((t - t0) / (t1 - t0)) * (W - L - R));
    const y = (s) => T + (1 - (s - lo) / (hi - lo)) * (H - T - B);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "trend" },
      svg("title", { text: label }));
    for (const [bound] of BANDS.slice(1)) {
      if (bound <= lo || bound >= hi) continue;
      root.append(svg("line", { x1: L, x2: W - R, y1: y(bound), y2: y(bound), class: "threshold" }),
        svg("text", { x: L - 4, y: y(bound) + 3, "text-anchor": "end", class: "axis", text: String(bound) }));
    }
    root.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis-line" }));
    const xy = points.map((p, i) => [x(times[i]), y(p.score)]);
    if (points.length > 1) {
      root.append(svg("polyline", { points: xy.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" "), class: "line", fill: "none" }));
    }
    points.forEach((p, i) => root.append(svg("circle", { cx: xy[i][0], cy: xy[i][1], r: 4, class: `dot ${bandClass(p.band)}` },
      svg("title", { text: `${p.as_of}: ${Math.floor(p.score)}` }))));
    const first = points[0], last = points[points.length - 1];
    root.append(svg("text", { x: L, y: H - 8, class: "axis", text: first.as_of }));
    if (points.length > 1) root.append(svg("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "axis", text: last.as_of }));
    return root;
  }

  /** One SVG bar per row: from the running total before it to the one after, on one scale. */
  function waterfall(rows) {
    let run = 0;
    const spans = rows.map((row) => {
      if (row.kind === "base" || row.kind === "total") { run = row.points; return [0, row.points]; }
      const from = run; run += row.points; return [from, run];
    });
    const ends = spans.flatMap((s, i) => (rows[i].kind === "step" ? s : [s[1]]));
    const lo = Math.min(...ends) - 25, hi = Math.max(...ends) + 10;
    const sx = (v) => ((Math.max(lo, v) - lo) / (hi - lo)) * 1000;
    return rows.map((row, i) => {
      const [a, b] = spans[i];
      const from = row.kind === "step" ? Math.min(a, b) : lo, to = row.kind === "step" ? Math.max(a, b) : b;
      const cls = row.kind === "step" ? (row.points >= 0 ? "up" : "down") : row.kind;
      const bar = svg("svg", { viewBox: "0 0 1000 14", preserveAspectRatio: "none", class: "wf-bar", "aria-hidden": "true", focusable: "false" },
        svg("rect", { x: sx(from).toFixed(1), y: 1, width: Math.max(3, sx(to) - sx(from)).toFixed(1), height: 12, class: `wf-${cls}` }));
      if (row.kind === "step") bar.append(svg("line", { x1: sx(a).toFixed(1), x2: sx(a).toFixed(1), y1: 0, y2: 14, class: "wf-from" }));
      return { bar, cls };
    });
  }

  global.OsmanthusCharts = { gauge, trend, waterfall, bandClass };
})(window);
