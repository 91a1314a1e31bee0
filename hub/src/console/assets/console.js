// Outpost console: the only script. No framework; values from the server reach the page only
// as server-rendered (escaped) HTML or as textContent.
//
// - Live updates: <body data-live="topic ..."> names what the page follows; the server's
//   change events (/ui/events, server-sent events) name what changed; on a match the page is
//   fetched again and each element with data-live-region (and an id) is replaced by its new
//   version. Forms outside live regions keep what the operator typed.
// - Log following: <pre data-follow="URL"> is refetched every second while it is in the page
//   (the server ends following when the attempt is over: data-follow disappears in the next
//   swap); an unreachable agent's message is shown in its place.
// - Log loading: <pre data-src="URL"> (a finished attempt's log) is fetched once and kept
//   across live swaps.
"use strict";
(function () {
  const body = document.body;
  const status = document.getElementById("live-status");
  const topics = (body.dataset.live || "").split(" ").filter(Boolean);
  let pending = false;
  let busy = false;

  function schedule() {
    if (pending) return;
    pending = true;
    setTimeout(refresh, 200);
  }

  async function refresh() {
    pending = false;
    if (busy) {
      schedule();
      return;
    }
    busy = true;
    try {
      const r = await fetch(location.href, {
        headers: { "X-Outpost-Live": "1" },
        credentials: "same-origin",
      });
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      document.querySelectorAll("[data-live-region][id]").forEach(function (el) {
        const next = doc.getElementById(el.id);
        if (next) el.replaceWith(document.importNode(next, true));
      });
      follow();
      load();
      body.dataset.refreshed = String(Date.now());
    } catch (e) {
      // The next change event tries again.
    } finally {
      busy = false;
    }
  }

  if (topics.length > 0 && window.EventSource) {
    const es = new EventSource("/ui/events");
    es.addEventListener("change", function (ev) {
      const changed = ev.data.split(" ");
      if (changed.some(function (t) { return t === "*" || topics.includes(t); })) schedule();
    });
    es.addEventListener("open", function () {
      body.dataset.live_connected = "1";
      if (status) status.textContent = "";
    });
    es.addEventListener("error", function () {
      body.dataset.live_connected = "0";
    });
  }

  const following = new Set();
  const followed = new Map();
  function follow() {
    document.querySelectorAll("pre[data-follow]").forEach(function (pre) {
      if (following.has(pre.id)) return;
      following.add(pre.id);
      const tick = async function () {
        const cur = document.getElementById(pre.id);
        if (!cur || !cur.dataset.follow) {
          following.delete(pre.id);
          return;
        }
        try {
          const r = await fetch(cur.dataset.follow, { credentials: "same-origin" });
          const text = await r.text();
          if (r.ok) followed.set(pre.id, text);
          cur.textContent = text;
          cur.classList.toggle("unreachable", !r.ok);
        } catch (e) {
          cur.classList.add("unreachable");
        }
        setTimeout(tick, 1000);
      };
      tick();
    });
  }
  follow();

  const loaded = new Map();
  function load() {
    document.querySelectorAll("pre[data-src]").forEach(function (pre) {
      if (pre.dataset.follow) {
        // Swapped in while followed: show what was followed until the next fetch.
        if (followed.has(pre.id)) pre.textContent = followed.get(pre.id);
        return;
      }
      const src = pre.dataset.src;
      const known = loaded.get(pre.id);
      if (known && known.src === src) {
        if (known.text !== null && pre.dataset.loaded !== "1") {
          pre.textContent = known.text;
          pre.dataset.loaded = "1";
        }
        return;
      }
      loaded.set(pre.id, { src: src, text: null });
      fetch(src, { credentials: "same-origin" })
        .then(function (r) {
          return r.text().then(function (text) {
            const cur = document.getElementById(pre.id);
            if (r.ok) loaded.set(pre.id, { src: src, text: text });
            else loaded.delete(pre.id);
            if (!cur || cur.dataset.follow) return;
            cur.textContent = text;
            cur.dataset.loaded = "1";
            cur.classList.toggle("unreachable", !r.ok);
          });
        })
        .catch(function () {
          loaded.delete(pre.id);
        });
    });
  }
  load();
})();
