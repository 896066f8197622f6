// The overview refreshes its own section: fetch it again, swap it in.
// No reload, no third-party script; a failed fetch just waits for the next.
"use strict";
(function () {
  const section = document.getElementById("overview");
  document.body.dataset.loadedAt = String(Date.now());
  if (!section) return;
  const source = section.dataset.source;
  const every = Math.max(250, Number(section.dataset.refresh) || 5000);
  async function refresh() {
    try {
      const response = await fetch(source, { credentials: "same-origin" });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("overview");
        if (fresh) {
          section.innerHTML = fresh.innerHTML;
          section.dataset.updated = fresh.dataset.updated;
          section.classList.remove("stale");
        }
      } else {
        section.classList.add("stale");
      }
    } catch (e) {
      section.classList.add("stale");
    } finally {
      setTimeout(refresh, every);
    }
  }
  setTimeout(refresh, every);
})();
