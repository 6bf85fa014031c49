// Shared helpers of the particlesnn pages (plain JavaScript, no libraries).
"use strict";
const PNN = {
  toast(msg, bad) {
    const t = document.getElementById("toast");
    t.textContent = msg; t.className = "toast" + (bad ? " bad" : ""); t.style.display = "block";
    clearTimeout(PNN._tt); PNN._tt = setTimeout(() => { t.style.display = "none"; }, bad ? 6000 : 2500);
  },
  async api(url, opts) {
    const r = await fetch(url, opts);
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      let msg = body && body.detail ? body.detail : r.status + " " + r.statusText;
      if (typeof msg !== "string") msg = JSON.stringify(msg);
      throw new Error(msg);
    }
    return body;
  },
  fmt(v) {
    if (v === null || v === undefined || v === "") return "";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
    const txt = v.toPrecision(a >= 100 ? Math.max(3, Math.floor(Math.log10(a)) + 1) : 4);
    return txt.includes(".") ? txt.replace(/\.?0+$/, "") : txt;  // 190, not 19: zeros of an integer stay
  },
  user() { return localStorage.getItem("pnn-user") || ""; },
  remember(set) {
    const list = JSON.parse(localStorage.getItem("pnn-sets") || "[]").filter((s) => s.id !== set.id);
    list.unshift(set);
    localStorage.setItem("pnn-sets", JSON.stringify(list.slice(0, 50)));
  },
  recent() { return JSON.parse(localStorage.getItem("pnn-sets") || "[]"); },
  el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  },
  // Pick the column that holds the particle diameter (first match wins).
  diameterColumn(cols) {
    const prefs = [/^eq_diameter_nm$/, /^eq_diameter_px$/, /diameter.*_nm$/, /diameter/];
    for (const re of prefs) { const c = cols.find((x) => re.test(x)); if (c) return c; }
    return null;
  },
  unitOf(col) {
    if (!col) return "";
    if (col.endsWith("_nm2")) return "nm²"; if (col.endsWith("_nm")) return "nm";
    if (col.endsWith("_px2")) return "px²"; if (col.endsWith("_px")) return "px";
    return "";
  },
  label(key) { return key.replace(/_/g, " "); },
  // Unit of a statistic's key: lengths in nm or px; heights in the map's unit (height_max_nA_mean,
  // height_max_au_mean: grey levels of a plain image, "a.u.").
  statUnit(key) {
    const h = key.match(/^(?:height_max|height_mean|substrate)_([A-Za-z0-9]+)_/);
    if (h) return h[1] === "au" ? "a.u." : h[1];
    return (key.match(/_(nm|px)(?:_|$)/) || [])[1] || "";
  },
};
// Key statistics first (with units), everything else under "All statistics".
PNN.KEY_STATS = [
  [/^n_images$/, "images"], [/^count$/, "particles"], [/^n_border$/, "cut by the border"], [/^n_sized$/, "in size statistics"],
  [/^d_mean_(nm|px)$/, "mean diameter"], [/^d_std_(nm|px)$/, "std of diameter"], [/^d_sem_(nm|px)$/, "SEM of mean diameter"],
  [/^eq_diameter_(nm|px)_median$/, "median diameter"], [/^d_mid_surface_(nm|px)$/, "mid-surface diameter"],
  [/^lognorm_median_(nm|px)$/, "log-normal median"], [/^height_max_.*_mean$/, "mean height"],
  [/^density_per_um2$/, "density, µm⁻²"], [/^density_per_um2_sem$/, "SEM of the images' densities, µm⁻²"],
  [/^density_per_um2_poisson$/, "counting error of the density, µm⁻²"],
  [/^density_per_mpx$/, "density, per Mpx"], [/^coverage$/, "coverage"],
  [/^nn_distance_(nm|px)_mean$/, "mean nearest-neighbour distance"],
  [/^clark_evans_r$/, "Clark-Evans ratio (1 random, <1 clustered)"],
];
PNN.summaryTable = function (table, summary) {
  table.innerHTML = "";
  const add = (tb, k, v, name) => {
    const tr = PNN.el("tr");
    tr.appendChild(PNN.el("td", { title: k }, name || PNN.label(k)));
    let txt = PNN.fmt(v);
    if (k === "coverage" && typeof v === "number") txt = (100 * v).toFixed(2) + " %";
    else { const u = PNN.statUnit(k); if (u && typeof v === "number" && name) txt += " " + u; }
    tr.appendChild(PNN.el("td", {}, txt)); tb.appendChild(tr);
  };
  const used = new Set();
  const keys = Object.keys(summary).filter((k) => summary[k] === null || typeof summary[k] !== "object");
  for (const [re, name] of PNN.KEY_STATS) {
    const k = keys.find((x) => re.test(x) && !used.has(x));
    if (k !== undefined && summary[k] !== null) { used.add(k); add(table, k, summary[k], name); }
  }
  const rest = keys.filter((k) => !used.has(k));
  if (rest.length) {
    const tr = PNN.el("tr"); const td = PNN.el("td", { colspan: 2 });
    const det = PNN.el("details"); det.appendChild(PNN.el("summary", { class: "muted small" }, `All statistics (${rest.length})`));
    const inner = PNN.el("table", { class: "kv" });
    for (const k of rest) add(inner, k, summary[k]);
    det.appendChild(inner); td.appendChild(det); tr.appendChild(td); table.appendChild(tr);
  }
};
// Columns shown by default in the particle table (the rest behind "all columns").
PNN.defaultColumns = function (cols) {
  const u = cols.includes("eq_diameter_nm") ? "nm" : "px";
  const want = ["label", `eq_diameter_${u}`, `area_${u}2`, null, `length_${u}`, `width_${u}`, "aspect_ratio", "circularity", "volume_nm3", "touches_border", "score"];
  const out = [];
  for (const w of want) {
    if (w === null) { const h = cols.find((c) => c.startsWith("height_max_")); if (h) out.push(h); continue; }
    if (cols.includes(w)) out.push(w);
  }
  return out;
};
