// Result page of one image: map + contours (toggle, zoom, pan), selection linked to the table,
// histogram, summary, and editing (delete, add, redraw, merge, split, undo, import).
"use strict";
(function () {
  const image = JSON.parse(document.getElementById("image-data").textContent);
  const api = `/api/images/${image.id}`;
  const svg = document.getElementById("svg");
  const scene = document.getElementById("scene");
  const mapEl = document.getElementById("map");
  const polysEl = document.getElementById("polys");
  const draftEl = document.getElementById("draft");
  const hint = document.getElementById("hint");
  const viewerEl = document.getElementById("viewer");
  const NS = "http://www.w3.org/2000/svg";
  let res = null;              // current result from the API
  let rows = [], cols = [], dcol = null, labelIdx = 0;
  const selected = new Set();
  let mode = "select";
  let draft = [];              // vertices being drawn, [x, y] px
  let view = { x: 0, y: 0, w: 1, h: 1 };
  let sort = { col: null, dir: 1 };
  let contours = true;
  let busy = false;
  const HINTS = {
    select: "Click a particle to select it (shift-click: several) · wheel: zoom · drag: pan · Del: delete · M: merge",
    add: "Draw new: click the corners of the particle · double-click or Enter to finish · Esc to cancel",
    redraw: "Redraw border: select one particle first, then click its new corners · double-click or Enter to finish",
    split: "Split: select one particle first, then click a line across it · double-click or Enter to finish",
  };

  // ---------------------------------------------------------------- loading
  function showDetector(info) {  // which model outlined the particles, with which profile
    if (!info || !info.method) return;
    if (!info.model) { document.getElementById("detector").textContent = `Method: ${info.method}`; return; }
    let txt = `Detector: ${info.model}`;
    if (info.profile) txt += `, ${info.profile} profile` + (info.profile_reason ? ` (${info.profile_reason})` : "");
    document.getElementById("detector").textContent = txt;
  }
  async function waitDone() {
    try {
      const im = await PNN.api(api);
      const badge = document.getElementById("status-badge");
      badge.textContent = im.status; badge.className = "badge " + im.status;
      if (im.status === "done") { document.getElementById("pending").hidden = true; document.getElementById("result").hidden = false; showDetector(im.info); return load(); }
      if (im.status === "failed") { const p = document.getElementById("pending-text"); p.innerHTML = ""; p.appendChild(PNN.el("span", { class: "error" }, im.error)); return; }
      document.getElementById("pending-text").textContent = `Analysis ${im.status}… this page updates by itself.`;
    } catch (err) { PNN.toast(err.message, true); }
    setTimeout(waitDone, 1000);
  }
  async function load() {
    const r = await PNN.api(`${api}/result`);
    mapEl.setAttribute("href", `${api}/map.png`);
    mapEl.setAttribute("width", r.shape[1]); mapEl.setAttribute("height", r.shape[0]);
    apply(r);
    fit();
    const m = location.hash.match(/^#particle-(\d+)$/);
    if (m) showParticle(m[1]);
  }
  function apply(r) {
    res = r;
    cols = r.table.columns; rows = r.table.rows;
    labelIdx = cols.indexOf("label");
    dcol = PNN.diameterColumn(cols);
    document.getElementById("filter-unit").textContent = dcol ? `(${PNN.label(dcol)})` : "";
    selected.clear();
    drawPolys(); drawSummary(); drawTable(); drawHist(); drawCheck(); updateButtons();
    document.getElementById("version-note").textContent = r.version ? `(edited, version ${r.version})` : "(as analysed)";
  }

  // Active learning: the particles the model was least sure of; a link selects and shows one.
  function drawCheck() {
    const c = res.check_first || { low_score: [], refinement: [] };
    const fill = (ul, list) => {
      ul.innerHTML = "";
      for (const it of list) {
        const li = PNN.el("li");
        const a = PNN.el("a", { href: `#particle-${it.label}`, "data-label": it.label }, `#${it.label}`);
        a.addEventListener("click", (e) => { e.preventDefault(); showParticle(it.label); history.replaceState(null, "", `#particle-${it.label}`); });
        li.appendChild(a); li.appendChild(PNN.el("span", { class: "small" }, it.reason));
        ul.appendChild(li);
      }
      ul.parentElement.hidden = list.length === 0;
    };
    fill(document.getElementById("check-low"), c.low_score);
    fill(document.getElementById("check-ref"), c.refinement);
    document.getElementById("check-card").hidden = c.low_score.length + c.refinement.length === 0;
  }
  function showParticle(label) {
    label = +label;
    if (!res || !res.polygons[label]) return;
    setMode("select"); select(label, false);
    const poly = res.polygons[label].flat();
    const xs = poly.map((p) => p[0]), ys = poly.map((p) => p[1]);
    const w = Math.max(...xs) - Math.min(...xs), h = Math.max(...ys) - Math.min(...ys);
    const side = Math.max(8 * Math.max(w, h), 40);
    const cx = (Math.min(...xs) + Math.max(...xs)) / 2, cy = (Math.min(...ys) + Math.max(...ys)) / 2;
    const ar = viewerEl.clientWidth / Math.max(1, viewerEl.clientHeight);
    setView({ x: cx - side * ar / 2, y: cy - side / 2, w: side * ar, h: side });
  }

  // ---------------------------------------------------------------- view
  function setView(v) {
    view = v;
    svg.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
    const z = viewerEl.clientWidth / v.w;
    document.getElementById("zoomlabel").textContent = `${Math.round(z * 100)} %`;
  }
  function fit() {
    const W = viewerEl.clientWidth, H = viewerEl.clientHeight;
    const iw = res.shape[1], ih = res.shape[0];
    const s = Math.min(W / iw, H / ih);
    const w = W / s, h = H / s;
    setView({ x: (iw - w) / 2, y: (ih - h) / 2, w, h });
  }
  function zoom(f, cx, cy) {
    if (cx === undefined) { cx = view.x + view.w / 2; cy = view.y + view.h / 2; }
    const w = view.w / f, h = view.h / f;
    if (w < 4 || w > 40 * res.shape[1]) return;
    setView({ x: cx - (cx - view.x) / f, y: cy - (cy - view.y) / f, w, h });
  }
  function toImage(e) {
    const pt = svg.createSVGPoint(); pt.x = e.clientX; pt.y = e.clientY;
    const p = pt.matrixTransform(scene.getScreenCTM().inverse());
    return [Math.round(p.x * 100) / 100, Math.round(p.y * 100) / 100];
  }
  function centerOn(label) {
    const rings = res.polygons[label]; if (!rings) return;
    const poly = rings.flat();
    const xs = poly.map((p) => p[0]), ys = poly.map((p) => p[1]);
    const cx = (Math.min(...xs) + Math.max(...xs)) / 2, cy = (Math.min(...ys) + Math.max(...ys)) / 2;
    if (cx < view.x || cx > view.x + view.w || cy < view.y || cy > view.y + view.h)
      setView({ x: cx - view.w / 2, y: cy - view.h / 2, w: view.w, h: view.h });
  }

  // ---------------------------------------------------------------- drawing
  function inFilter(row) {
    if (!dcol) return true;
    const v = row[cols.indexOf(dcol)];
    const lo = parseFloat(document.getElementById("fmin").value), hi = parseFloat(document.getElementById("fmax").value);
    if (Number.isFinite(lo) && !(v >= lo)) return false;
    if (Number.isFinite(hi) && !(v <= hi)) return false;
    return true;
  }
  function drawPolys() {
    polysEl.innerHTML = "";
    const frag = document.createDocumentFragment();
    for (const [label, rings] of Object.entries(res.polygons)) {
      const p = document.createElementNS(NS, "path");
      p.setAttribute("d", rings.map((r) => "M" + r.map((q) => q[0] + " " + q[1]).join("L") + "Z").join(""));
      p.setAttribute("class", "p");
      p.dataset.label = label;
      const t = document.createElementNS(NS, "title"); t.textContent = `particle ${label}`; p.appendChild(t);
      frag.appendChild(p);
    }
    polysEl.appendChild(frag);
    polysEl.style.display = contours ? "" : "none";
    markPolys();
  }
  function markPolys() {
    const keep = new Set(rows.filter(inFilter).map((r) => String(r[labelIdx])));
    for (const p of polysEl.children) {
      p.classList.toggle("sel", selected.has(+p.dataset.label));
      p.classList.toggle("dim", !keep.has(p.dataset.label));
    }
  }
  function drawDraft(extra) {
    const pts = extra ? draft.concat([extra]) : draft;
    draftEl.setAttribute("points", pts.map((q) => q[0] + "," + q[1]).join(" "));
  }

  // ---------------------------------------------------------------- panels
  function drawSummary() { PNN.summaryTable(document.getElementById("summary"), res.summary); }
  function drawHist() {
    const box = document.getElementById("hist"); box.innerHTML = "";
    if (!dcol) { box.textContent = "no diameter column"; return; }
    const j = cols.indexOf(dcol), jb = cols.indexOf("touches_border");
    // the particles of the size statistics (summary, set page): those cut by the image
    // border are left out unless the upload asked for them
    const shown = rows.filter(inFilter);
    const sized = image.include_border || jb < 0 ? shown : shown.filter((r) => !r[jb]);
    const vals = sized.map((r) => r[j]).filter((v) => v !== null);
    const cut = shown.length - sized.length;
    document.getElementById("hist-title").textContent =
      `Size distribution (${vals.length}${cut ? `; ${cut} cut by the border left out` : ""})`;
    box.appendChild(PNNHist.render([{ name: image.name, values: vals }], `${PNN.label(dcol)}`));
  }
  function drawTable() {
    const thead = document.querySelector("#ptable thead"), tbody = document.querySelector("#ptable tbody");
    thead.innerHTML = ""; tbody.innerHTML = "";
    const all = document.getElementById("allcols").checked;
    const def = PNN.defaultColumns(cols);
    const vis = cols.map((c, j) => j).filter((j) => all || def.includes(cols[j]) || def.length < 2);
    const htr = PNN.el("tr");
    vis.map((j) => [cols[j], j]).forEach(([c, j]) => {
      const th = PNN.el("th", { title: "sort by " + c }, PNN.label(c));
      if (sort.col === j) th.className = sort.dir > 0 ? "sorted-asc" : "sorted-desc";
      th.onclick = () => { sort = { col: j, dir: sort.col === j ? -sort.dir : 1 }; drawTable(); };
      htr.appendChild(th);
    });
    thead.appendChild(htr);
    let shown = rows.filter(inFilter);
    if (sort.col !== null) {
      const j = sort.col;
      shown = shown.slice().sort((a, b) => {
        const x = a[j], y = b[j];
        if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
        return (x < y ? -1 : 1) * sort.dir;
      });
    }
    const frag = document.createDocumentFragment();
    for (const r of shown) {
      const tr = PNN.el("tr");
      tr.dataset.label = r[labelIdx];
      vis.forEach((j) => tr.appendChild(PNN.el("td", {}, PNN.fmt(r[j]))));
      tr.onclick = (e) => { select(+tr.dataset.label, e.shiftKey); centerOn(tr.dataset.label); };
      frag.appendChild(tr);
    }
    tbody.appendChild(frag);
    document.getElementById("count").textContent = shown.length === rows.length ? `(${rows.length})` : `(${shown.length} of ${rows.length} shown)`;
    markRows(false);
  }
  function markRows(scroll) {
    let first = null;
    for (const tr of document.querySelectorAll("#ptable tbody tr")) {
      const on = selected.has(+tr.dataset.label);
      tr.classList.toggle("sel", on);
      if (on && !first) first = tr;
    }
    if (scroll && first) {  // scroll inside the table only, never the page
      const wrap = first.closest(".tablewrap");
      const head = wrap.querySelector("thead").offsetHeight;
      const top = first.offsetTop - head, bottom = first.offsetTop + first.offsetHeight;
      if (top < wrap.scrollTop) wrap.scrollTop = top;
      else if (bottom > wrap.scrollTop + wrap.clientHeight) wrap.scrollTop = bottom - wrap.clientHeight;
    }
  }
  function select(label, add) {
    if (!add) selected.clear();
    if (label !== null) { if (add && selected.has(label)) selected.delete(label); else selected.add(label); }
    markPolys(); markRows(true); updateButtons();
  }
  function updateButtons() {
    document.getElementById("btn-delete").disabled = selected.size === 0 || busy;
    document.getElementById("btn-merge").disabled = selected.size < 2 || busy;
    document.getElementById("btn-undo").disabled = !res || !res.can_undo || busy;
    document.getElementById("btn-contours").classList.toggle("active", contours);
  }
  function setMode(m) {
    if ((m === "redraw" || m === "split") && selected.size !== 1) {
      PNN.toast(`${m === "split" ? "Split" : "Redraw"}: select exactly one particle first`, true); return;
    }
    mode = m; draft = []; drawDraft();
    for (const b of document.querySelectorAll("[data-mode]")) b.classList.toggle("active", b.dataset.mode === m);
    svg.classList.toggle("drawing", m !== "select");
    draftEl.setAttribute("class", "draft");
    draftEl.style.fill = m === "split" ? "none" : "";
    hint.textContent = HINTS[m];
    hint.classList.toggle("drawing", m !== "select");
  }

  // ---------------------------------------------------------------- edits
  async function edit(body, what) {
    if (busy) return;
    busy = true; updateButtons();
    const before = rows.length;
    try {
      const r = await PNN.api(`${api}/edits`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(Object.assign(body, { user: PNN.user() })) });
      apply(r);
      PNN.toast(`${what}: ${before} → ${r.count} particles`);
    } catch (err) { PNN.toast(`${what} refused: ${err.message}`, true); }
    busy = false; updateButtons();
  }
  async function undo() {
    if (busy || !res.can_undo) return;
    busy = true;
    try { const r = await PNN.api(`${api}/undo`, { method: "POST", headers: { "X-User": PNN.user() } }); apply(r); PNN.toast(`Undone: ${r.count} particles`); }
    catch (err) { PNN.toast(err.message, true); }
    busy = false; updateButtons();
  }
  function finishDraft() {
    const pts = [];
    for (const p of draft) { const q = pts[pts.length - 1]; if (!q || Math.hypot(q[0] - p[0], q[1] - p[1]) > 0.3) pts.push(p); }
    const m = mode; const lab = [...selected][0];
    setMode("select");
    if (m === "add") { if (pts.length < 3) return PNN.toast("A particle needs at least 3 corners", true); edit({ action: "add", polygon: pts }, "Added"); }
    else if (m === "redraw") { if (pts.length < 3) return PNN.toast("A border needs at least 3 corners", true); edit({ action: "redraw", label: lab, polygon: pts }, `Redrew particle ${lab}`); }
    else if (m === "split") { if (pts.length < 2) return PNN.toast("Draw a line of at least 2 points", true); edit({ action: "split", label: lab, line: pts }, `Split particle ${lab}`); }
  }

  // ---------------------------------------------------------------- input
  let down = null;
  svg.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 && e.button !== 1) return;
    down = { x: e.clientX, y: e.clientY, view: Object.assign({}, view), moved: false, target: e.target, shift: e.shiftKey };
    svg.setPointerCapture(e.pointerId);
  });
  svg.addEventListener("pointermove", (e) => {
    if (down) {
      const dx = e.clientX - down.x, dy = e.clientY - down.y;
      if (!down.moved && Math.hypot(dx, dy) > 4) { down.moved = true; svg.classList.add("panning"); }
      if (down.moved) {
        const s = down.view.w / viewerEl.clientWidth;
        setView({ x: down.view.x - dx * s, y: down.view.y - dy * s, w: down.view.w, h: down.view.h });
      }
    } else if (mode !== "select" && draft.length) drawDraft(toImage(e));
  });
  svg.addEventListener("pointerup", (e) => {
    if (!down) return;
    const d = down; down = null; svg.classList.remove("panning");
    if (d.moved) return;
    if (mode === "select") {
      const lab = d.target && d.target.dataset ? d.target.dataset.label : undefined;
      if (lab !== undefined) select(+lab, d.shift); else select(null, false);
    } else { draft.push(toImage(e)); drawDraft(); }
  });
  svg.addEventListener("dblclick", (e) => { if (mode !== "select") { e.preventDefault(); finishDraft(); } });
  svg.addEventListener("wheel", (e) => { e.preventDefault(); const p = toImage(e); zoom(e.deltaY < 0 ? 1.25 : 0.8, p[0], p[1]); }, { passive: false });
  window.addEventListener("resize", () => { if (res) fit(); });
  document.addEventListener("keydown", (e) => {
    if (!res || e.target.tagName === "INPUT") return;
    if (mode !== "select") {
      if (e.key === "Escape") setMode("select");
      else if (e.key === "Enter") finishDraft();
      else if (e.key === "Backspace") { draft.pop(); drawDraft(); e.preventDefault(); }
      return;
    }
    if ((e.key === "Delete" || e.key === "Backspace") && selected.size) { e.preventDefault(); doDelete(); }
    else if (e.key === "m" || e.key === "M") doMerge();
    else if (e.key === "z" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); undo(); }
    else if (e.key === "c" || e.key === "C") toggleContours();
    else if (e.key === "+" || e.key === "=") zoom(1.25);
    else if (e.key === "-") zoom(0.8);
    else if (e.key === "0") fit();
    else if (e.key === "Escape") select(null, false);
  });
  function doDelete() {
    if (!selected.size) return;
    const ids = [...selected];
    edit({ action: "delete", labels: ids }, ids.length > 1 ? `Deleted ${ids.length} particles` : `Deleted particle ${ids[0]}`);
  }
  function doMerge() { if (selected.size >= 2) { const ids = [...selected]; edit({ action: "merge", labels: ids }, `Merged ${ids.join(" + ")}`); } }
  function toggleContours() { contours = !contours; polysEl.style.display = contours ? "" : "none"; updateButtons(); }
  for (const b of document.querySelectorAll("[data-mode]")) b.addEventListener("click", () => setMode(b.dataset.mode));
  document.getElementById("btn-delete").addEventListener("click", doDelete);
  document.getElementById("btn-merge").addEventListener("click", doMerge);
  document.getElementById("btn-undo").addEventListener("click", undo);
  document.getElementById("btn-contours").addEventListener("click", toggleContours);
  document.getElementById("btn-zoomin").addEventListener("click", () => zoom(1.25));
  document.getElementById("btn-zoomout").addEventListener("click", () => zoom(0.8));
  document.getElementById("btn-fit").addEventListener("click", fit);
  for (const id of ["fmin", "fmax"]) document.getElementById(id).addEventListener("input", () => { drawTable(); drawHist(); markPolys(); });
  document.getElementById("allcols").addEventListener("change", drawTable);
  document.getElementById("fclear").addEventListener("click", () => { document.getElementById("fmin").value = ""; document.getElementById("fmax").value = ""; drawTable(); drawHist(); markPolys(); });
  document.getElementById("import-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = document.getElementById("import-file").files[0];
    if (!f) return PNN.toast("Choose a LabelMe, VIA, COCO, ImageJ ROI or Gwyddion file first", true);
    const fd = new FormData(); fd.append("file", f, f.name); fd.append("user", PNN.user());
    try { const r = await PNN.api(`${api}/annotations`, { method: "POST", body: fd }); apply(r); PNN.toast(`Loaded ${f.name}: ${r.count} particles`); }
    catch (err) { PNN.toast(err.message, true); }
  });

  setMode("select");
  showDetector(image.info);
  if (image.status === "done") load().catch((err) => PNN.toast(err.message, true)); else waitDone();
})();
