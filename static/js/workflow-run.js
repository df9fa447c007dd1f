/* The live run page (templates/workflows/runs/detail.html). The websocket (htmx ws extension)
 * replaces fragments of the page as the run changes; this file only keeps what the reader did:
 * sections they opened or closed and a comment they were typing survive those replacements,
 * and the header says whether the page is live or reconnecting. */
(function () {
  "use strict";

  function live() { return document.getElementById("run-live"); }

  // Remember the reader's own choice for each <details> (a click on its summary, mouse or keyboard).
  document.addEventListener("click", function (event) {
    var summary = event.target.closest && event.target.closest("#run-live details[id] > summary");
    if (summary) summary.parentElement.dataset.touched = summary.parentElement.open ? "closed" : "open";
  });

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target, fragment = event.detail.fragment;
    if (!target || !fragment || !target.closest("#run-live")) return;
    target.querySelectorAll("details[data-touched]").forEach(function (old) {
      var fresh = fragment.querySelector("#" + CSS.escape(old.id));
      if (!fresh) return;
      fresh.open = old.dataset.touched === "open";
      fresh.dataset.touched = old.dataset.touched;
    });
    target.querySelectorAll("textarea[id]").forEach(function (old) {
      var fresh = old.value && fragment.querySelector("#" + CSS.escape(old.id));
      if (fresh && !fresh.value) fresh.value = old.value;
    });
  });

  document.addEventListener("htmx:wsOpen", function () {
    var el = live();
    if (el) { el.classList.add("is-open"); el.classList.remove("is-closed"); }
  });
  document.addEventListener("htmx:wsClose", function () {
    var el = live();
    if (el) { el.classList.add("is-closed"); el.classList.remove("is-open"); }
  });
})();
