/* A "Copy" button for a secret shown once: <button data-copy-target="ID"><span>Copy</span></button>
   copies the text of #ID, falls back to selecting it where the clipboard API is unavailable
   (plain HTTP), and says what happened in the button's label for two seconds. */
(function () {
  function wire(button) {
    var code = document.getElementById(button.dataset.copyTarget);
    var label = button.querySelector("span") || button;
    if (!code) return;
    function done(text) {
      label.textContent = text;
      setTimeout(function () { label.textContent = "Copy"; }, 2000);
    }
    function fallback() {
      var range = document.createRange();
      range.selectNodeContents(code);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try { document.execCommand("copy"); done("Copied"); } catch (e) { done("Press Ctrl+C"); }
    }
    button.addEventListener("click", function () {
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(code.textContent).then(function () { done("Copied"); }, fallback);
      } else {
        fallback();
      }
    });
  }
  document.querySelectorAll("button[data-copy-target]").forEach(wire);
})();
