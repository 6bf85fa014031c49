// Upload page: drag and drop, options, upload with progress, list of this browser's uploads.
"use strict";
(function () {
  const drop = document.getElementById("drop");
  const input = document.getElementById("file-input");
  const list = document.getElementById("file-list");
  const btn = document.getElementById("upload-btn");
  const form = document.getElementById("upload-form");
  const status = document.getElementById("upload-status");
  const bar = document.getElementById("upload-progress");
  const rejected = document.getElementById("rejected");
  const userInput = document.getElementById("user");
  let files = [];
  userInput.value = PNN.user();

  function size(n) { return n > 1048576 ? (n / 1048576).toFixed(1) + " MiB" : Math.max(1, Math.round(n / 1024)) + " KiB"; }
  function show() {
    list.innerHTML = "";
    files.forEach((f, i) => {
      const li = PNN.el("li");
      li.appendChild(PNN.el("span", {}, f.name));
      const right = PNN.el("span", { class: "muted" }, size(f.size) + " ");
      const x = PNN.el("a", { href: "#", title: "remove" }, "✕");
      x.onclick = (e) => { e.preventDefault(); files.splice(i, 1); show(); };
      right.appendChild(x); li.appendChild(right); list.appendChild(li);
    });
    btn.disabled = files.length === 0;
    btn.textContent = files.length > 1 ? `Upload and analyse ${files.length} files` : "Upload and analyse";
  }
  function addFiles(fl) { for (const f of fl) files.push(f); show(); }
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => addFiles(e.dataTransfer.files));

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!files.length) return;
    localStorage.setItem("pnn-user", userInput.value.trim());
    const fd = new FormData();
    files.forEach((f) => fd.append("files", f, f.name));
    for (const el of form.querySelectorAll("input[name], select[name]")) {
      if (el.type === "file") continue;
      if (el.type === "checkbox") fd.append(el.name, el.checked ? "true" : "false");
      else if (el.value.trim() !== "") fd.append(el.name, el.value.trim());
    }
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/sets");
    bar.style.display = "block"; btn.disabled = true; rejected.textContent = "";
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) {
        bar.firstElementChild.style.width = (100 * ev.loaded / ev.total).toFixed(1) + "%";
        status.textContent = `uploading ${size(ev.loaded)} of ${size(ev.total)}`;
      }
    };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = { detail: xhr.responseText }; }
      if (xhr.status === 201) {
        PNN.remember({ id: body.set_id, name: form.elements.name.value.trim() || files[0].name, n: body.images.length, when: new Date().toISOString() });
        if (body.rejected.length) {
          status.textContent = "";
          rejected.innerHTML = "";
          rejected.appendChild(PNN.el("div", {}, `${body.rejected.length} file(s) not accepted:`));
          body.rejected.forEach((r) => rejected.appendChild(PNN.el("div", {}, "• " + r.problem)));
          const a = PNN.el("a", { href: body.page, class: "btn primary", style: "margin-top:8px" }, `Continue with ${body.images.length} accepted file(s)`);
          rejected.appendChild(a);
        } else {
          status.textContent = "uploaded; opening results…";
          window.location.href = body.page;
        }
      } else {
        status.textContent = "";
        bar.style.display = "none";
        btn.disabled = false;
        rejected.textContent = `Upload refused (${xhr.status}): ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`;
      }
    };
    xhr.onerror = () => { status.textContent = ""; btn.disabled = false; rejected.textContent = "Network error: the upload did not reach the server."; };
    xhr.send(fd);
  });

  const recent = document.getElementById("recent");
  const items = PNN.recent();
  if (!items.length) recent.appendChild(PNN.el("li", { class: "muted" }, "none yet"));
  items.forEach((s) => {
    const li = PNN.el("li");
    li.appendChild(PNN.el("a", { href: "/sets/" + encodeURIComponent(s.id) }, s.name));
    li.appendChild(PNN.el("span", { class: "muted" }, `${s.n} file(s) · ${new Date(s.when).toLocaleString()}`));
    recent.appendChild(li);
  });
})();
