/* Agent Market chat widget: one line on the host page,
     <script src="https://HOST/static/js/embed-widget.js" data-chat="https://HOST/s/SPACE/KEY/frame/" async></script>
   optional data-colour="#4f46e5", data-label="Chat with us", data-end-user-token="…" (minted by
   the host's own server; never an API key). Draws a chat bubble in a shadow root (styles
   set through the CSSOM, so a strict host Content-Security-Policy without 'unsafe-inline'
   still renders it) and opens the chat in an iframe on first click. No network before then. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.getAttribute("data-chat")) return;
  var chatUrl = new URL(script.getAttribute("data-chat"), location.href);
  var colour = script.getAttribute("data-colour") || "#4f46e5";
  var label = script.getAttribute("data-label") || "Open chat";
  var hostToken = script.getAttribute("data-end-user-token");
  if (hostToken) chatUrl.hash = "host-token";

  function css(element, rules) { Object.keys(rules).forEach(function (k) { element.style[k] = rules[k]; }); }

  var host = document.createElement("div");
  host.setAttribute("data-agentmarket-widget", "");
  css(host, { position: "fixed", right: "16px", bottom: "16px", zIndex: "2147483000" });
  var shadow = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;

  var button = document.createElement("button");
  button.type = "button";
  button.setAttribute("aria-label", label);
  button.setAttribute("aria-expanded", "false");
  css(button, {
    width: "56px", height: "56px", borderRadius: "50%", border: "0", cursor: "pointer",
    background: colour, color: "#fff", boxShadow: "0 6px 20px rgba(0,0,0,.25)",
    display: "flex", alignItems: "center", justifyContent: "center", padding: "0"
  });
  var svgNS = "http://www.w3.org/2000/svg";
  var icon = document.createElementNS(svgNS, "svg");
  icon.setAttribute("width", "26"); icon.setAttribute("height", "26");
  icon.setAttribute("viewBox", "0 0 24 24"); icon.setAttribute("aria-hidden", "true");
  var path = document.createElementNS(svgNS, "path");
  path.setAttribute("d", "M4 4h16v12H8l-4 4z");
  path.setAttribute("fill", "none"); path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "2"); path.setAttribute("stroke-linejoin", "round");
  icon.appendChild(path);
  button.appendChild(icon);

  var frame = null;
  function open() {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.title = label;
      frame.src = chatUrl.href;
      frame.setAttribute("data-agentmarket-frame", "");
      css(frame, {
        position: "fixed", right: "16px", bottom: "84px", border: "0", borderRadius: "12px",
        width: "min(380px, calc(100vw - 32px))", height: "min(560px, calc(100vh - 110px))",
        boxShadow: "0 12px 40px rgba(0,0,0,.25)", background: "#fff"
      });
      if (hostToken) {
        window.addEventListener("message", function (event) {
          if (event.source === frame.contentWindow && event.origin === chatUrl.origin &&
              event.data && event.data.type === "agentmarket:ready") {
            frame.contentWindow.postMessage({ type: "agentmarket:token", token: hostToken }, chatUrl.origin);
          }
        });
      }
      shadow.appendChild(frame);
    } else {
      frame.hidden = !frame.hidden;
      css(frame, { display: frame.hidden ? "none" : "block" });
    }
    button.setAttribute("aria-expanded", frame.hidden ? "false" : "true");
  }
  button.addEventListener("click", open);
  shadow.appendChild(button);
  (document.body || document.documentElement).appendChild(host);
  if (window.performance && performance.mark) {
    requestAnimationFrame(function () { performance.mark("agentmarket-widget-painted"); });
  }
})();
