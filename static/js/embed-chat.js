/* The shared chat (templates/agents/embed/public.html): gets a visitor token (from the host
   page through postMessage when the widget was given one, else an anonymous token kept in
   localStorage and renewed for the same visitor), shows the visitor's own conversation, sends
   questions and follows the answer by polling (twice a second) while one is coming: the
   text written so far grows in place. Text only, no HTML. */
(function () {
  "use strict";
  var root = document.getElementById("embed-chat");
  if (!root) return;
  var api = root.dataset.api;
  var tokensApi = root.dataset.tokens;
  var storeKey = "agentmarket-embed:" + tokensApi;
  var list = document.getElementById("embed-turns");
  var form = document.getElementById("embed-form");
  var input = document.getElementById("embed-question");
  var error = document.getElementById("embed-error");
  var greeting = list.querySelector(".embed-msg--greeting");
  var hostToken = null;
  var waitForHost = root.dataset.framed === "1" && location.hash === "#host-token";
  var polling = null;
  var POLL_MS = 500;

  // Kept in localStorage (the visitor's history survives a reload); in memory as well, for
  // browsers that give a third-party frame no storage (then history lasts as long as the page).
  var memory = null;
  function stored() {
    try { return JSON.parse(localStorage.getItem(storeKey) || "null") || memory; } catch (e) { return memory; }
  }
  function store(value) {
    memory = value;
    try { localStorage.setItem(storeKey, JSON.stringify(value)); } catch (e) { /* no storage */ }
  }
  function messageOf(body, status) {
    return (body && body.error && body.error.message) || "Something went wrong (" + status + ").";
  }
  function show(text) { error.textContent = text || ""; }

  function token(renew) {
    if (hostToken) return Promise.resolve(hostToken);
    var saved = stored();
    if (!renew && saved && Date.parse(saved.expires_at) - Date.now() > 30000) {
      return Promise.resolve(saved.token);
    }
    return fetch(tokensApi, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ previous: saved ? saved.token : "" }),
      credentials: "omit"
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) throw new Error(messageOf(body, response.status));
        store(body);
        return body.token;
      });
    });
  }

  function call(method, body, retried) {
    return token(false).then(function (value) {
      return fetch(api, {
        method: method,
        headers: { "Content-Type": "application/json", "X-End-User-Token": value },
        body: body ? JSON.stringify(body) : undefined,
        credentials: "omit"
      });
    }).then(function (response) {
      if (response.status === 401 && !retried && !hostToken) {
        store(null);
        return call(method, body, true);
      }
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(messageOf(data, response.status));
        return data;
      });
    });
  }

  function bubble(kind, text) {
    var item = document.createElement("li");
    item.className = "embed-msg embed-msg--" + kind;
    item.textContent = text;
    return item;
  }

  function render(conversation) {
    while (list.firstChild) list.removeChild(list.firstChild);
    if (greeting) list.appendChild(greeting);
    var coming = false;
    conversation.turns.forEach(function (turn) {
      list.appendChild(bubble("visitor", turn.question));
      if (turn.status === "streaming") {
        coming = true;
        list.appendChild(bubble("agent embed-msg--pending", turn.answer || "Answering…"));
      } else if (turn.status === "failed") {
        list.appendChild(bubble("agent embed-msg--failed", turn.error || "No answer."));
      } else {
        list.appendChild(bubble("agent", turn.answer));
      }
    });
    list.parentNode.scrollTop = list.parentNode.scrollHeight;
    root.dataset.state = coming ? "answering" : "idle";
    // While an answer is coming, its text so far is in the turn's `answer`: ask again soon.
    if (coming && !polling) polling = setTimeout(function () { polling = null; load(); }, POLL_MS);
  }

  function load() {
    return call("GET").then(render, function (e) { show(e.message); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var question = input.value.trim();
    if (!question) { show("Write a message first."); input.focus(); return; }
    show("");
    form.querySelector("button").disabled = true;
    call("POST", { question: question }).then(function () {
      input.value = "";
      return load();
    }, function (e) { show(e.message); }).then(function () {
      form.querySelector("button").disabled = false;
    });
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });

  if (waitForHost) {
    window.addEventListener("message", function (event) {
      if (event.source !== window.parent || !event.data || event.data.type !== "agentmarket:token") return;
      hostToken = String(event.data.token || "");
      load();
    });
    window.parent.postMessage({ type: "agentmarket:ready" }, "*");
  } else {
    load();
  }
})();
