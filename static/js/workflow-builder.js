// Workflow builder: the diagram and the step panel are swapped together by htmx (#builder).
// Keep the diagram where the user scrolled it, and on narrow screens (panel under the diagram)
// bring the panel into view after a step was opened.
(function () {
  "use strict";
  var saved = null;
  var fromDiagram = false;

  document.addEventListener("htmx:beforeRequest", function (event) {
    var canvas = document.querySelector("#builder .wf-canvas");
    saved = canvas ? { left: canvas.scrollLeft, top: canvas.scrollTop } : null;
    fromDiagram = !!(event.target && event.target.closest && event.target.closest(".wf-canvas"));
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var builder = document.getElementById("builder");
    if (!builder || !builder.contains(event.target) && event.target !== builder) return;
    var canvas = builder.querySelector(".wf-canvas");
    if (canvas && saved) {
      canvas.scrollLeft = saved.left;
      canvas.scrollTop = saved.top;
    }
    var panel = document.getElementById("builder-panel");
    var stacked = window.matchMedia("(max-width: 1100px)").matches;
    if (panel && stacked && (fromDiagram || builder.dataset.panel !== "overview" || panel.querySelector(".wf-issues, .alert"))) {
      panel.scrollIntoView({ behavior: "smooth", block: "start" });
    }
    var invalid = builder.querySelector("[aria-invalid=true]");
    if (invalid) invalid.focus({ preventScroll: stacked });
  });
})();
