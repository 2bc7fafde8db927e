// Control buttons of a monitor attached to a running acquisition. Every request carries the
// token printed when the server started (kept for this browser tab only).
(function () {
  "use strict";
  function field() { return document.getElementById("control-token"); }
  function say(text) {
    sessionStorage.setItem("tomopilot-control-result", text);
    var out = document.getElementById("control-result");
    if (out) { out.textContent = text; }
  }
  // The page is redrawn live (live.js swaps the content in): put back what the user typed and
  // the answer to the last control request, which the redraw would otherwise wipe.
  document.addEventListener("tomopilot:updated", function () {
    var token = sessionStorage.getItem("tomopilot-token");
    if (token && field() && !field().value) { field().value = token; }
    var out = document.getElementById("control-result");
    var last = sessionStorage.getItem("tomopilot-control-result");
    if (out && last !== null) { out.textContent = last; }
  });
  document.addEventListener("input", function (event) {  // the page is redrawn live: keep it
    if (event.target.id === "control-token") {
      sessionStorage.setItem("tomopilot-token", event.target.value.trim());
    }
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-control]") : null;
    if (!button) { return; }
    event.preventDefault();
    var token = field() ? field().value.trim() : "";
    if (token) { sessionStorage.setItem("tomopilot-token", token); }
    token = token || sessionStorage.getItem("tomopilot-token") || "";
    var action = button.dataset.control;
    if (action === "skip") {
      var target = document.getElementById("control-target").value;
      action = "skip/" + encodeURIComponent(target);
    }
    fetch("/api/control/" + action, {
      method: "POST",
      headers: { "Authorization": "Bearer " + token },
    }).then(function (r) {
      return r.json().then(function (body) {
        say(r.ok ? (body.action + (body.target ? " " + body.target : "")) : (body.detail || r.status));
      });
    }).catch(function () { say("the server did not answer"); });
  });
})();
