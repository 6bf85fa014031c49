// Histograms as SVG: one or several series (overlaid as step outlines).
"use strict";
const PNNHist = {
  COLORS: ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#854d0e", "#475569"],
  // series: [{name, values}], xlabel: axis title. Returns an SVG element.
  render(series, xlabel, opts) {
    opts = opts || {};
    const W = opts.width || 340, H = opts.height || 210, L = 44, R = 18, T = 10, B = 38;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const all = series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)));
    const mk = (tag, a, txt) => { const e = document.createElementNS(ns, tag); for (const k in a) e.setAttribute(k, a[k]); if (txt !== undefined) e.textContent = txt; svg.appendChild(e); return e; };
    if (all.length === 0) { mk("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no particles"); return svg; }
    let lo = Math.min(...all), hi = Math.max(...all);
    if (hi <= lo) { hi = lo + 1; lo = Math.max(0, lo - 1); }
    // Freedman–Diaconis bin width on the pooled values, 5..40 bins
    const sorted = all.slice().sort((a, b) => a - b);
    const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * (sorted.length - 1)))];
    let bw = 2 * (q(0.75) - q(0.25)) / Math.cbrt(sorted.length);
    let nb = bw > 0 ? Math.ceil((hi - lo) / bw) : Math.ceil(Math.sqrt(sorted.length));
    nb = Math.max(5, Math.min(40, nb));
    bw = (hi - lo) / nb;
    const counts = series.map((s) => {
      const c = new Array(nb).fill(0);
      for (const v of s.values) if (Number.isFinite(v)) c[Math.min(nb - 1, Math.floor((v - lo) / bw))]++;
      return c;
    });
    const ymax = Math.max(1, ...counts.flat());
    const X = (v) => L + (v - lo) / (hi - lo) * (W - L - R);
    const Y = (c) => H - B - c / ymax * (H - T - B);
    mk("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
    mk("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4;
      mk("text", { x: X(v), y: H - B + 13, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, PNN.fmt(+v.toPrecision(3)));
    }
    const ystep = Math.max(1, Math.ceil(ymax / 4));
    for (let c = 0; c <= ymax; c += ystep) mk("text", { x: L - 4, y: Y(c) + 4, "text-anchor": "end" }, String(c));
    mk("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, xlabel);
    mk("text", { x: 10, y: (T + H - B) / 2, "text-anchor": "middle", transform: `rotate(-90 10 ${(T + H - B) / 2})` }, "count");
    if (series.length === 1 && !opts.steps) {
      counts[0].forEach((c, i) => {
        if (c > 0) mk("rect", { class: "bar", x: X(lo + i * bw) + 0.5, y: Y(c), width: Math.max(0.5, X(lo + (i + 1) * bw) - X(lo + i * bw) - 1), height: H - B - Y(c) });
      });
    } else {
      counts.forEach((cs, j) => {
        let d = `M ${X(lo)} ${Y(0)}`;
        cs.forEach((c, i) => { d += ` L ${X(lo + i * bw)} ${Y(c)} L ${X(lo + (i + 1) * bw)} ${Y(c)}`; });
        d += ` L ${X(hi)} ${Y(0)}`;
        const col = PNNHist.COLORS[j % PNNHist.COLORS.length];
        mk("path", { d, fill: col, "fill-opacity": series.length > 1 ? 0.08 : 0.3, stroke: col, "stroke-width": 1.6 });
      });
    }
    return svg;
  },
};
