// Behaviour every page shares. Loaded as a file because the Content-Security-Policy allows no
// inline script: templates say what they want with data attributes, and the listeners here are
// delegated from the document, so content swapped in by htmx works the same.
//   <form data-confirm="Remove X?">   asks before submitting (plain or htmx forms)
//   <button data-dismiss=".alert">    removes the closest matching ancestor
//   <select data-autosubmit>          submits its form when changed
//   <form data-slug-from="id_name" data-slug-to="id_slug">  suggests an address from a name
(function () {
  "use strict";

  // Capture phase: runs before htmx's own submit listener, which it can then stop.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm")) return;
    if (!window.confirm(form.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var button = target && target.closest("[data-dismiss]");
    if (button) {
      var box = button.closest(button.getAttribute("data-dismiss"));
      if (box) box.remove();
    }
    // Dropdowns: close when clicking elsewhere.
    document.querySelectorAll("details[data-dropdown][open]").forEach(function (d) {
      if (!target || !d.contains(target)) d.removeAttribute("open");
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details[data-dropdown][open]").forEach(function (d) {
      d.removeAttribute("open");
      d.querySelector("summary").focus();
    });
  });

  document.addEventListener("change", function (event) {
    var field = event.target;
    if (!(field instanceof HTMLSelectElement) || !field.hasAttribute("data-autosubmit")) return;
    if (field.form.requestSubmit) field.form.requestSubmit();
    else field.form.submit();
  });

  // Suggest an address from the name until the user edits the address themselves.
  function suggestSlugs(root) {
    root.querySelectorAll("form[data-slug-from][data-slug-to]").forEach(function (form) {
      var name = document.getElementById(form.getAttribute("data-slug-from"));
      var slug = document.getElementById(form.getAttribute("data-slug-to"));
      if (!name || !slug || slug.dataset.slugWired) return;
      slug.dataset.slugWired = "1";
      var touched = slug.value !== "";
      slug.addEventListener("input", function () { touched = slug.value !== ""; });
      name.addEventListener("input", function () {
        if (touched) return;
        slug.value = name.value.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
          .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
      });
    });
  }

  // HTMX requests that fail outright (5xx, network) get a toast instead of silently doing nothing.
  function toast(text) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var item = document.createElement("div");
    item.className = "toast toast--error";
    item.setAttribute("role", "status");
    var p = document.createElement("p");
    p.textContent = text;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast__close";
    close.setAttribute("aria-label", "Dismiss notification");
    close.setAttribute("data-dismiss", ".toast");
    close.textContent = "\u00d7";
    item.append(p, close);
    box.append(item);
  }
  document.addEventListener("htmx:responseError", function () {
    toast("Something went wrong on our side. Please try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("Could not reach the server. Check your connection and try again.");
  });
  document.addEventListener("htmx:load", function (event) { suggestSlugs(event.target); });

  function ready() {
    // Success and info toasts step aside after a few seconds; errors and warnings stay.
    document.querySelectorAll(".toast--success, .toast--info").forEach(function (t) {
      setTimeout(function () { t.remove(); }, 6000);
    });
    suggestSlugs(document);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
