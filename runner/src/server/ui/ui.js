// runner's web UI: times in the viewer's time zone, and a run page that
// follows its run live. Pages work without this script; it only adds.
"use strict";

function localTimes(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (isNaN(d)) continue;
    t.textContent = d.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
    });
    t.title = d.toISOString().replace(".000Z", "Z") + " (UTC)";
  }
}

// A run page: follow /api/v1/runs/{id}/stream and, after each burst of
// events, fetch the page's content again and swap it in, keeping what the
// viewer opened and never while they are typing in a form.
function followRun() {
  const run = document.getElementById("run");
  if (!run || run.dataset.status !== "running" || !window.EventSource) return;
  const id = run.dataset.run;
  let timer = null;
  let busy = false;
  let again = false;

  async function refresh() {
    timer = null;
    const active = document.activeElement;
    if (active && active.form && document.querySelector("main").contains(active)
        && (active.value || active.tagName === "SELECT")) {
      timer = setTimeout(refresh, 1000); // the viewer is answering: wait
      return;
    }
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch("/ui/runs/" + encodeURIComponent(id) + "/live",
        { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (!response.ok) return;
      const html = await response.text();
      const main = document.querySelector("main");
      const open = new Set([...main.querySelectorAll("details[open]")].map(path));
      const y = window.scrollY;
      main.innerHTML = html;
      for (const d of main.querySelectorAll("details")) if (open.has(path(d))) d.open = true;
      localTimes(main);
      window.scrollTo(0, y);
      document.dispatchEvent(new CustomEvent("runner:updated", { detail: { seq: main.querySelector("#run")?.dataset.seq } }));
    } finally {
      busy = false;
      if (again) { again = false; schedule(); }
    }
  }
  function schedule() { if (!timer) timer = setTimeout(refresh, 150); }
  // A details element is known by the step (or section) it is in and its place.
  function path(d) {
    const owner = d.closest("[id]");
    const all = owner ? [...owner.querySelectorAll("details")] : [];
    return (owner ? owner.id : "") + "#" + all.indexOf(d);
  }

  const after = run.dataset.seq || "-1";
  const stream = new EventSource("/api/v1/runs/" + encodeURIComponent(id) + "/stream?after=" + after);
  stream.addEventListener("event", schedule);
  stream.addEventListener("end", () => { stream.close(); schedule(); });
  document.body.dataset.live = "on";
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  followRun();
});
