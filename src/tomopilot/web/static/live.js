// Live updates for the tomopilot monitor: listen to the server's event stream and, whenever
// something new is recorded, fetch this page's content again and swap it in (no reload).
(function () {
  "use strict";
  var main = document.getElementById("live");
  var state = { refreshes: 0, revision: null, connected: false };
  window.tomopilotLive = state;
  if (!main || !main.dataset.stream || !window.EventSource) { return; }
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    fetch(url.toString(), { cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          main.innerHTML = html;
          state.refreshes += 1;
          document.dispatchEvent(new CustomEvent("tomopilot:updated"));
        }
      })
      .catch(function () { /* the server may be restarting: the next event retries */ })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  var source = new EventSource(main.dataset.stream);
  source.addEventListener("open", function () { state.connected = true; });
  source.addEventListener("update", function (event) {
    var revision = JSON.parse(event.data).revision;
    if (state.revision !== null && revision !== state.revision) { refresh(); }
    state.revision = revision;
  });
})();
