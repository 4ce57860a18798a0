// Stent dashboard: the polling fallback of the live parts. An element
// with sse-connect (htmx's sse extension) and data-poll="URL" gets its
// content from server-sent events; while its stream is down (a proxy that
// buffers, no EventSource in the browser) this polls data-poll every two
// seconds instead, and stops when the stream opens again.
(function () {
  "use strict";
  var every = 2000;
  function start(elt) {
    if (elt.stentPoll || !elt.dataset.poll) {
      return;
    }
    elt.dataset.polling = "true";
    elt.stentPoll = setInterval(function () {
      if (!document.body.contains(elt)) {
        stop(elt);
        return;
      }
      htmx.ajax("GET", elt.dataset.poll, { target: elt, swap: "innerHTML" });
    }, every);
  }
  function stop(elt) {
    if (elt.stentPoll) {
      clearInterval(elt.stentPoll);
      elt.stentPoll = null;
      delete elt.dataset.polling;
    }
  }
  document.addEventListener("htmx:sseError", function (e) {
    var elt = e.target.closest && e.target.closest("[data-poll]");
    if (elt) {
      start(elt);
    }
  });
  document.addEventListener("htmx:sseOpen", function (e) {
    var elt = e.target.closest && e.target.closest("[data-poll]");
    if (elt) {
      stop(elt);
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    if (typeof EventSource === "undefined") {
      document.querySelectorAll("[data-poll]").forEach(start);
    }
  });
})();
