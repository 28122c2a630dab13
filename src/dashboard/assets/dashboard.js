// campaign-sync dashboard: times in the viewer's zone, live updates of the #live region while
// the tab is visible, confirmation of destructive actions. No library, no build step.
(function () {
  "use strict";
  var EVERY_MS = 5000;

  function localTimes(root) {
    var fmt = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
    });
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (!isNaN(at)) { el.textContent = fmt.format(at); }
    });
  }

  function busy(live) {
    // Do not replace what the operator is using: a focused control or a ticked checkbox.
    var active = document.activeElement;
    if (active && active !== document.body && live.contains(active)) { return true; }
    return live.querySelector("input[type=checkbox]:checked") !== null;
  }

  function refresh() {
    var live = document.getElementById("live");
    var toggle = document.getElementById("live-toggle");
    var status = document.getElementById("live-status");
    if (!live || !toggle || !toggle.checked || document.hidden || busy(live)) { return; }
    fetch(window.location.href, {
      headers: { "X-Dashboard-Fragment": "1" },
      credentials: "same-origin",
      redirect: "manual"
    }).then(function (r) {
      if (!r.ok) { throw new Error(r.status === 0 ? "signed out" : "HTTP " + r.status); }
      return r.text();
    }).then(function (html) {
      live.innerHTML = html;
      localTimes(live);
      status.textContent = "updated " + new Date().toLocaleTimeString();
      live.setAttribute("data-updated", String(Date.now()));
    }).catch(function (e) {
      status.textContent = "live update failed (" + e.message + "); retrying";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    setInterval(refresh, EVERY_MS);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { refresh(); }
    });
    document.addEventListener("submit", function (ev) {
      var msg = ev.target.getAttribute("data-confirm");
      if (msg && !window.confirm(msg)) { ev.preventDefault(); }
    });
    document.addEventListener("change", function (ev) {
      if (ev.target.id === "select-all") {
        document.querySelectorAll("input[name=id]").forEach(function (box) {
          box.checked = ev.target.checked;
        });
      }
    });
  });
})();
