// Set page: progress of every image, then joint statistics and overlaid histograms.
"use strict";
(function () {
  let set = JSON.parse(document.getElementById("set-data").textContent);
  const tbody = document.querySelector("#images-table tbody");
  PNN.remember({ id: set.id, name: set.name, n: set.total, when: set.created });
  let statsShownFor = -1;

  function pick(summary, re) {
    for (const k in summary) if (re.test(k) && typeof summary[k] === "number") return [k, summary[k]];
    return [null, null];
  }
  function render() {
    const c = set.counts;
    const pct = Math.round(100 * set.progress);
    document.getElementById("set-progress").style.width = pct + "%";
    document.getElementById("set-progress-text").textContent =
      `${c.done} of ${set.total} analysed` + (c.failed ? `, ${c.failed} failed` : "") + (c.running ? `, ${c.running} running` : "") + (c.queued ? `, ${c.queued} queued` : "");
    tbody.innerHTML = "";
    for (const im of set.images) {
      const tr = PNN.el("tr");
      const td0 = PNN.el("td");
      td0.appendChild(PNN.el("a", { href: im.page }, im.name));
      if (im.error && im.status === "failed") td0.appendChild(PNN.el("div", { class: "error small", style: "white-space:normal" }, im.error));
      tr.appendChild(td0);
      const tdS = PNN.el("td"); tdS.appendChild(PNN.el("span", { class: "badge " + im.status }, im.status)); tr.appendChild(tdS);
      tr.appendChild(PNN.el("td", {}, im.shape[0] ? `${im.shape[0]} × ${im.shape[1]}` : ""));
      const s = im.summary || {};
      tr.appendChild(PNN.el("td", {}, im.status === "done" ? PNN.fmt(s.count) : ""));
      const d = pick(s, /^d_mean_(nm|px)$/), dsem = pick(s, /^d_sem_(nm|px)$/);
      tr.appendChild(PNN.el("td", {}, d[0] ? `${PNN.fmt(d[1])}${dsem[0] && dsem[1] !== null ? " ± " + PNN.fmt(+dsem[1].toPrecision(2)) : ""} ${PNN.unitOf(d[0])}` : ""));
      const derr = s.density_per_um2_poisson;  // counting error, one sigma
      tr.appendChild(PNN.el("td", {}, typeof s.density_per_um2 !== "number" ? "" : PNN.fmt(s.density_per_um2)
        + (typeof derr === "number" && derr > 0 ? " ± " + PNN.fmt(+derr.toPrecision(2)) : "")));
      tr.appendChild(PNN.el("td", {}, typeof s.coverage === "number" ? (100 * s.coverage).toFixed(1) + " %" : ""));
      tr.appendChild(PNN.el("td", {}, im.status === "done" ? PNN.fmt(+im.seconds.toFixed(2)) : ""));
      tr.onclick = (e) => { if (e.target.tagName !== "A") window.location.href = im.page; };
      tbody.appendChild(tr);
    }
    if (c.done !== statsShownFor) { statsShownFor = c.done; loadStats(); }
  }
  async function loadStats() {
    if (!set.counts.done) return;
    try {
      const st = await PNN.api(`/api/sets/${set.id}/stats`);
      const series = st.series.map((s) => ({ name: s.name, values: s.values }));
      const box = document.getElementById("set-hist");
      box.innerHTML = "";
      box.appendChild(PNNHist.render(series, st.column ? `${PNN.label(st.column)}` : "diameter", { steps: series.length > 1, width: 720, height: 300 }));
      document.getElementById("hist-note").textContent = series.length > 1 ? `(${series.length} images overlaid)` : "";
      const leg = document.getElementById("set-legend"); leg.innerHTML = "";
      if (series.length > 1) series.forEach((s, j) => {
        const sp = PNN.el("span"); const i = PNN.el("i"); i.style.background = PNNHist.COLORS[j % PNNHist.COLORS.length];
        sp.appendChild(i); sp.appendChild(document.createTextNode(`${s.name} (${s.values.length})`)); leg.appendChild(sp);
      });
      const kv = document.getElementById("joint"); kv.innerHTML = "";
      PNN.summaryTable(kv, st.joint);
      document.getElementById("joint-note").textContent = st.note || "";
    } catch (err) { PNN.toast("statistics: " + err.message, true); }
  }
  async function poll() {
    try { set = await PNN.api(`/api/sets/${set.id}`); render(); } catch (err) { PNN.toast(err.message, true); }
    if (!set.finished) setTimeout(poll, 1200);
  }
  render();
  if (!set.finished) setTimeout(poll, 800);
})();
