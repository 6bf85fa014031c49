// Model page: corrected images, "Improve the model with my corrections" (progress), registry.
"use strict";
(function () {
  const fmtF1 = (v) => (v === null || v === undefined ? "–" : v.toFixed(3));
  let polling = null;

  function scoreCell(sc, part) {
    const td = PNN.el("td");
    const v = ((sc || {})[part] || {}).iou_f1;
    const ref = (((sc || {}).parent || {})[part] || {}).iou_f1;
    td.appendChild(PNN.el("span", { class: "f1" }, fmtF1(v)));
    if (v !== undefined && v !== null && ref !== undefined && ref !== null) {
      const d = v - ref;
      const cls = Math.abs(d) < 0.0005 ? "muted" : d > 0 ? "better" : "worse";
      td.appendChild(PNN.el("span", { class: "small " + cls }, ` (${fmtF1(ref)})`));
      td.title = `compared with ${((sc.parent || {}).id) || "the default"} on the same images`;
    }
    const n = ((sc || {})[part] || {}).n_images;
    if (n) td.title = (td.title ? td.title + "; " : "") + `${n} images`;
    return td;
  }

  function drawModels(d) {
    const tb = document.querySelector("#models-table tbody");
    tb.innerHTML = "";
    for (const m of d.models) {
      const tr = PNN.el("tr", { "data-id": m.id });
      const name = PNN.el("td");
      name.appendChild(PNN.el("div", {}, m.name));
      name.appendChild(PNN.el("div", { class: "muted small" }, m.id));
      tr.appendChild(name);
      const st = PNN.el("td"); st.appendChild(PNN.el("span", { class: "badge " + m.status }, m.status)); tr.appendChild(st);
      tr.appendChild(scoreCell(m.scores, "user"));
      tr.appendChild(scoreCell(m.scores, "benchmark"));
      const data = m.data || {};
      tr.appendChild(PNN.el("td", {}, data.images ? `${data.images} corrected (${data.heldout_images} held out)` : (m.id === "shipped" ? "shipped training set" : "–")));
      tr.appendChild(PNN.el("td", {}, m.created ? m.created.replace("T", " ").slice(0, 16) : "–"));
      tr.appendChild(PNN.el("td", { class: "note" }, m.note || ""));
      const act = PNN.el("td", { class: "actions" });
      if (m.status !== "default") {
        const b = PNN.el("button", { class: "btn", type: "button", title: "Use this model for new analyses (your choice, even if its scores are lower)" }, "Make default");
        b.onclick = () => promote(m.id); act.appendChild(b);
      }
      const a = PNN.el("a", { class: "btn", href: `/api/models/${m.id}/download`, title: "Download the model file to share it" }, "Download");
      act.appendChild(a);
      tr.appendChild(act);
      tb.appendChild(tr);
    }
    document.getElementById("rollback-btn").disabled = d.default === "shipped";
  }

  function drawCorrections(c) {
    const tb = document.querySelector("#corr-table tbody");
    tb.innerHTML = "";
    document.getElementById("corr-count").textContent = `(${c.counts.images} images, ${c.counts.particles} particles)`;
    document.getElementById("corr-empty").hidden = c.images.length > 0;
    document.getElementById("dl-dataset").parentElement.hidden = c.images.length === 0;  // a 409 else
    for (const im of c.images) {
      const tr = PNN.el("tr");
      const td = PNN.el("td"); td.appendChild(PNN.el("a", { href: im.page }, im.name)); tr.appendChild(td);
      tr.appendChild(PNN.el("td", {}, String(im.particles)));
      tr.appendChild(PNN.el("td", { title: im.actions.join(", ") }, String(im.edits)));
      tr.appendChild(PNN.el("td", {}, im.edited_by || "anonymous"));
      tr.appendChild(PNN.el("td", {}, im.split === "heldout" ? "checking" : "training"));
      tb.appendChild(tr);
    }
    document.getElementById("finetune-btn").disabled = c.counts.images < 2;
    document.getElementById("finetune-btn").title = c.counts.images < 2 ? "Correct at least 2 images first" : "";
  }

  function drawTraining(t) {
    const box = document.getElementById("training");
    if (!t) { box.hidden = true; return false; }
    box.hidden = false;
    const badge = document.getElementById("training-badge");
    badge.textContent = t.status; badge.className = "badge " + t.status;
    document.getElementById("training-phase").textContent = t.phase + (t.user ? ` · started by ${t.user}` : "");
    document.getElementById("training-progress").style.width = `${Math.round(100 * t.progress)}%`;
    const res = document.getElementById("training-result");
    res.innerHTML = "";
    if (t.status === "failed") res.appendChild(PNN.el("span", { class: "error" }, t.error));
    if (t.status === "done" && t.result) {
      const s = t.result.scores || {}; const p = s.parent || {};
      const u = (s.user || {}).iou_f1, pu = (p.user || {}).iou_f1, b = (s.benchmark || {}).iou_f1, pb = (p.benchmark || {}).iou_f1;
      res.appendChild(PNN.el("div", {}, `New model ${t.model_id}: F1 ${fmtF1(u)} on your held-out images (current default ${fmtF1(pu)}), `
        + `${fmtF1(b)} on the synthetic benchmark (${fmtF1(pb)}).`));
      res.appendChild(PNN.el("div", { class: t.result.promoted ? "better" : "muted" },
        (t.result.promoted ? "It is now the default model: " : "Kept as a candidate: ") + t.result.reason));
    }
    const busy = t.status === "queued" || t.status === "running";
    document.getElementById("finetune-btn").disabled = busy || document.getElementById("finetune-btn").disabled;
    return busy;
  }

  let busy = false;
  async function refresh() {
    clearTimeout(polling);
    try {
      const d = await PNN.api("/api/models");
      drawCorrections(await PNN.api("/api/corrections"));
      drawModels(d);
      busy = drawTraining(d.training);
    } catch (err) { PNN.toast(err.message, true); }
    // a failed request while a model trains (server busy, a restart) must not stop the
    // page following the training: try again, a little later
    if (busy) polling = setTimeout(refresh, 1500);
  }

  async function promote(id) {
    try {
      await PNN.api(`/api/models/${id}/promote?force=true`, { method: "POST" });
      PNN.toast(`${id} is now the default model`);
    } catch (err) { PNN.toast(err.message, true); }
    refresh();
  }

  document.getElementById("finetune-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const minutes = parseFloat(document.getElementById("minutes").value);
    try {
      await PNN.api("/api/models/finetune", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ minutes, user: PNN.user() }) });
      PNN.toast("Training started: this page shows its progress");
    } catch (err) { PNN.toast(err.message, true); }
    refresh();
  });
  document.getElementById("rollback-btn").addEventListener("click", async () => {
    try { const r = await PNN.api("/api/models/rollback", { method: "POST" }); PNN.toast(`Default model is now ${r.default}`); }
    catch (err) { PNN.toast(err.message, true); }
    refresh();
  });
  document.getElementById("import-model-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = document.getElementById("model-file").files[0];
    if (!f) { PNN.toast("Choose a .zip model file first", true); return; }
    const fd = new FormData(); fd.append("file", f);
    try { const m = await PNN.api("/api/models/import", { method: "POST", body: fd }); PNN.toast(`Imported as ${m.id}`); }
    catch (err) { PNN.toast(err.message, true); }
    refresh();
  });
  refresh();
})();
