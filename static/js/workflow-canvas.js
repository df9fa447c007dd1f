/* The workflow canvas (templates/workflows/builder/_diagram.html with data-canvas): drag step
 * types from the palette, move steps, drag from an output port to a step to connect, select and
 * delete steps or edges, copy and paste, undo and redo, pan, zoom, fit and auto-layout; every
 * action has a key (docs/workflows.md, "The canvas").
 *
 * The server owns the definition. Each gesture becomes a batch of operations POSTed as JSON to
 * the canvas endpoint with the version it was made on ("base"); the server saves one new version
 * (or refuses: a stale base gets the conflict message and an offer to reload) and the builder is
 * re-rendered from the server (htmx), so the diagram, its markers and the side panel always show
 * the saved version. Undo and redo restore the version before or after an edit (a new version
 * again), for the canvas's edits and the side panel's alike. The last run's step states are read
 * from the same endpoint.
 *
 * A websocket (data-socket; workflows/builder/consumers.py) pushes who else has the canvas open
 * and on which step, every save of the workflow (by anyone, anywhere) and each change of the
 * live run; the canvas then redraws or re-reads the step states. Only while the socket is down
 * does the canvas poll the JSON endpoint instead (and it tries the socket again).
 *
 * Selecting several steps: Shift+click, Ctrl+A, Space on a focused step, or a rectangle dragged
 * on empty canvas with Shift held (or in "Select area" mode, which is how a finger does it).
 * On a touch screen a finger on empty canvas pans; a finger on a step moves it.
 *
 * State that must outlive the htmx swaps of #builder (zoom, history, clipboard) lives here and
 * in sessionStorage; listeners are delegated from the document, so swapped content works. */
(function () {
  "use strict";

  var GRID = 8, STEP = 16, BIG_STEP = 64, DRAG_START = 4, BOX_H = 56, BOX_W = 184;
  var POLL_RUN_MS = 1500, POLL_MS = 3000;  // while a run is going; otherwise (others' saves, presence)
  var zoom = 1;
  var picked = new Set();       // steps selected on the canvas (shift-click, Ctrl+A, paste)
  var pickedEdge = null;        // {source, target, branch}
  var definition = null;        // the latest version's, from the endpoint
  var known = null;             // the number of that version
  var seenBase = null;          // the version last shown, to notice the side panel's saves
  var postedFromPage = false;   // an htmx POST (a side-panel save) is under way
  var pollTimer = null;
  var gesture = null;           // the pointer gesture under way
  var suppressClick = false;    // the click that ends a drag must not open the panel
  var nudge = null;             // keyboard moves waiting to be sent {timer, moves}
  var busy = false;
  var notice = null;            // [text, kind] to show once the saved version is on screen
  var refocus = null;           // the step to give the focus back to after the swap
  var socket = null;            // the canvas's websocket, while it is open or opening
  var socketUrl = null;
  var socketOpen = false;
  var socketRetry = 0;
  var socketTimer = null;
  var sentSelected = null;      // the selection the socket was last told
  var pushedVersion = 0;        // the newest version a push announced
  var present = [];             // the others on this canvas (pushed or polled)
  var runTimer = null;
  var pagePending = false;      // an htmx request is under way: a pushed save waits for its swap
  var selectMode = false;       // "Select area": a drag on empty canvas draws a rectangle

  function canvas() { return document.querySelector("#builder .wf-canvas[data-canvas]"); }
  function svg() { var c = canvas(); return c && c.querySelector("svg.wf-diagram"); }
  function editable() { var c = canvas(); return !!(c && c.dataset.editable); }
  function base() { return parseInt(canvas().dataset.base, 10); }
  function nodes() { return Array.prototype.slice.call(canvas().querySelectorAll(".wf-node[data-step]")); }
  function node(id) { return canvas().querySelector('.wf-node[data-step="' + CSS.escape(id) + '"]'); }
  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; } catch (e) { return ""; }
  }
  function store(key, value) {
    var name = "wf-canvas:" + key + ":" + canvas().dataset.canvas;
    if (value === undefined) {
      try { return JSON.parse(sessionStorage.getItem(name) || "null"); } catch (e) { return null; }
    }
    sessionStorage.setItem(name, JSON.stringify(value));
  }
  function history() { return store("history") || { undo: [], redo: [] }; }

  // ------------------------------------------------------------------ messages
  function say(text, kind, reload) {
    var box = document.querySelector("#builder [data-canvas-status]");
    if (!box) return;
    box.replaceChildren();
    box.className = "wf-canvas__status" + (kind ? " is-" + kind : "");
    if (!text) return;
    var lines = Array.isArray(text) ? text : [text];
    var p = document.createElement("p");
    p.textContent = lines[0];
    box.append(p);
    if (lines.length > 1) {
      var ul = document.createElement("ul");
      lines.slice(1).forEach(function (line) { var li = document.createElement("li"); li.textContent = line; ul.append(li); });
      box.append(ul);
    }
    if (reload) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn--sm";
      button.textContent = "Reload";
      button.addEventListener("click", function () { window.location.reload(); });
      box.append(button);
    }
  }

  // ------------------------------------------------------------------ the server
  function refresh(selected) {
    var c = canvas();
    var url = c.dataset.page + (selected ? "?step=" + encodeURIComponent(selected) : "");
    return window.htmx.ajax("GET", url, { target: "#builder", swap: "outerHTML" });
  }

  /* POST a batch made on the version shown; `record` says whether it is a new edit (undo
   * and redo manage the history themselves). Resolves to the answer, or null if refused. */
  function send(ops, record, select) {
    if (busy) return Promise.resolve(null);
    busy = true;
    var made = base();
    var saved = null;  // the version saved, once the server said so
    say("Saving…", "busy");
    return fetch(canvas().dataset.canvas, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify({ base: made, ops: ops })
    }).then(function (response) {
      return response.json().catch(function () { return { error: "The server answered " + response.status + "." }; })
        .then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (answer) {
      busy = false;
      var body = answer.body;
      if (!answer.ok) {
        var problems = (body.problems || []).filter(function (p) { return p !== body.error; });
        say([body.error || "Nothing was saved."].concat(problems), "error", body.conflict);
        return null;
      }
      if (record) {
        var h = history();
        h.undo.push({ at: body.version, restore: made, redo: body.version });
        h.redo = [];
        store("history", h);
      }
      seenBase = body.version;
      saved = body.version;
      var count = body.problems.length;
      notice = ["Saved as version " + body.version + (count ? " (a draft with " + count + " problem" + (count > 1 ? "s" : "") + " to fix before it can run)" : "") + ".", "ok"];
      var chosen = select === undefined ? canvas().dataset.selected : select;
      return refresh(typeof chosen === "function" ? chosen(body) : chosen).then(function () { return body; });
    }).catch(function () {
      busy = false;
      say(saved === null
        ? "Could not reach the server; nothing was saved. Check your connection and try again."
        : "Saved as version " + saved + ", but the canvas could not be redrawn: reload the page.", "error");
      return null;
    });
  }

  function load() {
    var c = canvas();
    clearTimeout(pollTimer);
    if (!c) return;
    if (document.hidden) { if (!socketOpen) pollTimer = setTimeout(load, POLL_MS); return; }
    var url = c.dataset.canvas + "?selected=" + encodeURIComponent(c.dataset.selected || "") +
      (known !== null ? "&known=" + known : "");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (!canvas() || canvas() !== c) return;
        clearTimeout(pollTimer);
        if (!socketOpen) pollTimer = setTimeout(load, state && state.run && state.run.live ? POLL_RUN_MS : POLL_MS);
        if (!state) return;
        if (state.definition) { definition = state.definition; known = state.version; }
        showRun(state);
        if (!socketOpen) { present = state.present || []; showPresence(present); }
        if (socketOpen && state.run && state.run.live) tell({ watch: state.run.id });
        if (state.version > base() && state.version > (seenBase || 0)) followOthers(state.version);
      }).catch(function () { if (!socketOpen) pollTimer = setTimeout(load, POLL_MS); });
  }

  // ------------------------------------------------------------------ the websocket
  function tell(message) {
    if (socketOpen) socket.send(JSON.stringify(message));
  }
  function tellSelected() {
    var c = canvas();
    if (!c || !socketOpen) return;
    var selected = c.dataset.selected || "";
    if (selected !== sentSelected) { sentSelected = selected; tell({ selected: selected }); }
  }
  function markLive() {
    var c = canvas();
    if (c) c.setAttribute("data-live", socketOpen ? "push" : "poll");
  }
  function connectSocket() {
    var c = canvas();
    if (!c || !c.dataset.socket || !window.WebSocket) return;
    if (socket && socketUrl === c.dataset.socket) return;
    if (socket) { var old = socket; socket = null; old.close(); }
    clearTimeout(socketTimer);
    socketUrl = c.dataset.socket;
    var s = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + socketUrl);
    socket = s;
    s.addEventListener("open", function () {
      if (socket !== s) return;
      socketOpen = true;
      socketRetry = 0;
      sentSelected = null;
      clearTimeout(pollTimer);
      markLive();
      tellSelected();
      load();  // once: the run's state (and the live run to watch) as of now
    });
    s.addEventListener("message", function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "presence") { present = message.present || []; showPresence(present); }
      else if (message.type === "saved") {
        pushedVersion = Math.max(pushedVersion, message.version);
        if (!busy && !pagePending) othersSaved();
      } else if (message.type === "run") {
        clearTimeout(runTimer);
        runTimer = setTimeout(load, 100);  // changes come in bursts: read the states once
      }
    });
    s.addEventListener("close", function () {
      if (socket !== s) return;
      socket = null;
      socketOpen = false;
      markLive();
      if (!canvas()) return;
      load();  // polling takes over until the socket is back
      socketRetry += 1;
      socketTimer = setTimeout(connectSocket, Math.min(30000, 1000 * Math.pow(2, socketRetry)));
    });
  }
  // A pushed save not on screen yet (one's own is on screen already once its answer came).
  function othersSaved() {
    var c = canvas();
    if (c && pushedVersion > base() && pushedVersion > (seenBase || 0)) followOthers(pushedVersion);
  }

  // The side panel holds typing or choices not saved yet.
  function panelEdited() {
    var panel = document.getElementById("builder-panel");
    if (!panel) return false;
    return Array.prototype.some.call(panel.querySelectorAll("input, textarea, select"), function (field) {
      if (field.type === "hidden") return false;
      if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
      if (field.tagName === "SELECT") {
        var options = Array.prototype.slice.call(field.options);
        // Without a `selected` attribute the first option is what the page started with.
        if (!field.multiple && !options.some(function (o) { return o.defaultSelected; })) return field.selectedIndex > 0;
        return options.some(function (o) { return o.selected !== o.defaultSelected; });
      }
      return field.value !== field.defaultValue;
    });
  }

  // Someone else saved: show their version, unless that would throw away what is being done here.
  function followOthers(version) {
    if (busy || gesture || nudge || panelEdited()) {
      say("Someone saved version " + version + "; you are looking at version " + base() + ". Reload to see their change (what you type here is not saved yet).", "error", true);
      return;
    }
    notice = ["Someone saved version " + version + "; it is on screen now.", ""];
    seenBase = version;
    refresh(canvas().dataset.selected);
  }

  function showPresence(present) {
    var c = canvas();
    if (!c) return;
    nodes().forEach(function (el) {
      var here = present.filter(function (p) { return p.selected === el.dataset.step; }).map(function (p) { return p.name; });
      if (here.length) el.setAttribute("data-peer", here.join(", ")); else el.removeAttribute("data-peer");
    });
    var line = c.parentElement.querySelector("[data-presence]");
    if (!present.length) { if (line) line.remove(); return; }
    if (!line) {
      line = document.createElement("p");
      line.setAttribute("data-presence", "");
      line.className = "wf-presence";
      c.before(line);
    }
    line.textContent = "Also here: " + present.map(function (p) {
      return p.name + (p.selected ? " (on " + p.selected + ")" : "");
    }).join(", ");
  }

  var STATUS_TEXT = { succeeded: "✓ done", failed: "✗ failed", running: "● running", queued: "queued",
    waiting: "… waiting", skipped: "skipped", cancelled: "cancelled", pending: "" };

  function showRun(state) {
    nodes().forEach(function (el) {
      var status = state.run ? state.steps[el.dataset.step] || "pending" : "";
      if (status) el.setAttribute("data-run-status", status); else el.removeAttribute("data-run-status");
      if (status) el.setAttribute("aria-description", "last run: " + status); else el.removeAttribute("aria-description");
      var text = el.querySelector(".wf-node__run");
      if (text) text.textContent = state.run ? (status in STATUS_TEXT ? STATUS_TEXT[status] : status) : "";
    });
    var note = canvas().parentElement.querySelector("[data-run-note]");
    if (!state.run) { if (note) note.remove(); return; }
    if (!note) {
      note = document.createElement("p");
      note.setAttribute("data-run-note", "");
      note.className = "wf-run-note";
      canvas().before(note);
    }
    note.replaceChildren();
    note.append("Last run (v" + state.run.version + "): " + state.run.status + (state.run.live ? ", live" : "") + " · ");
    var link = document.createElement("a");
    link.href = state.run.url;
    link.textContent = "open run #" + state.run.id;
    note.append(link);
  }

  // ------------------------------------------------------------------ geometry
  function toDiagram(clientX, clientY) {
    var s = svg(), point = s.createSVGPoint();
    point.x = clientX; point.y = clientY;
    return point.matrixTransform(s.getScreenCTM().inverse());
  }
  function snap(v) { return Math.max(0, Math.round(v / GRID) * GRID); }
  function posOf(el) { return { x: parseFloat(el.dataset.x), y: parseFloat(el.dataset.y) }; }

  function applyZoom() {
    var s = svg();
    if (!s) return;
    s.setAttribute("width", Math.round(parseFloat(s.dataset.width) * zoom));
    s.setAttribute("height", Math.round(parseFloat(s.dataset.height) * zoom));
  }
  function setZoom(value) {
    zoom = Math.min(2.5, Math.max(0.25, value));
    applyZoom();
    say("Zoom " + Math.round(zoom * 100) + "%.", "");
  }
  function fit() {
    var c = canvas(), s = svg();
    var w = parseFloat(s.dataset.contentWidth) || 1, h = parseFloat(s.dataset.contentHeight) || 1;
    var room = Math.min(c.clientHeight || 600, window.innerHeight * 0.78);
    setZoom(Math.min((c.clientWidth - 24) / w, (room - 24) / h, 1.5));
    c.scrollLeft = 0; c.scrollTop = 0;
  }

  // Edges follow the steps being dragged: a single curve from the moved source to the target.
  function curve(x0, y0, x1, y1) {
    var mid = (y0 + y1) / 2;
    return "M" + x0.toFixed(1) + "," + y0.toFixed(1) + " C" + x0.toFixed(1) + "," + mid.toFixed(1) + " " +
      x1.toFixed(1) + "," + mid.toFixed(1) + " " + x1.toFixed(1) + "," + y1.toFixed(1);
  }
  function ends(path) {
    if (!path.dataset.ends) {
      var numbers = path.getAttribute("d").match(/-?\d+(\.\d+)?/g).map(parseFloat);
      path.dataset.ends = [numbers[0], numbers[1], numbers[numbers.length - 2], numbers[numbers.length - 1]].join(",");
    }
    return path.dataset.ends.split(",").map(parseFloat);
  }
  function follow(offsets) {
    canvas().querySelectorAll(".wf-edge, .wf-edge-hit").forEach(function (path) {
      var a = offsets[path.dataset.source], b = offsets[path.dataset.target];
      if (!a && !b) return;
      var e = ends(path);
      a = a || { dx: 0, dy: 0 }; b = b || { dx: 0, dy: 0 };
      path.setAttribute("d", curve(e[0] + a.dx, e[1] + a.dy, e[2] + b.dx, e[3] + b.dy));
    });
    canvas().querySelectorAll(".wf-labels g[data-source]").forEach(function (label) {
      label.style.visibility = offsets[label.dataset.source] || offsets[label.dataset.target] ? "hidden" : "";
    });
  }
  function shift(ids, dx, dy) {
    var offsets = {};
    ids.forEach(function (id) {
      var el = node(id);
      if (!el) return;
      var p = posOf(el);
      dx = Math.max(dx, -p.x); dy = Math.max(dy, -p.y);
    });
    ids.forEach(function (id) {
      var el = node(id);
      if (!el) return;
      el.setAttribute("transform", "translate(" + dx + " " + dy + ")");
      offsets[id] = { dx: dx, dy: dy };
    });
    follow(offsets);
    return { dx: dx, dy: dy };
  }
  function moveOps(ids, d) {
    return ids.map(function (id) {
      var p = posOf(node(id));
      return { op: "move", step: id, position: { x: snap(p.x + d.dx), y: snap(p.y + d.dy) } };
    });
  }

  // ------------------------------------------------------------------ selection
  function showPicked() {
    var c = canvas();
    if (!c) return;
    nodes().forEach(function (el) {
      if (picked.has(el.dataset.step)) el.setAttribute("data-picked", ""); else el.removeAttribute("data-picked");
    });
    c.querySelectorAll(".wf-edge, .wf-edge-hit").forEach(function (path) {
      var on = pickedEdge && path.dataset.source === pickedEdge.source && path.dataset.target === pickedEdge.target &&
        path.dataset.branch === pickedEdge.branch;
      if (on) path.setAttribute("data-picked", ""); else path.removeAttribute("data-picked");
    });
  }
  function targets() {
    if (picked.size) return Array.from(picked);
    var focused = document.activeElement && document.activeElement.closest && document.activeElement.closest(".wf-node[data-step]");
    if (focused && canvas().contains(focused)) return [focused.dataset.step];
    return canvas().dataset.selected ? [canvas().dataset.selected] : [];
  }

  // ------------------------------------------------------------------ actions
  function addStep(type, at) {
    var position = at;
    if (!position) {
      var bottom = 0, left = null;
      nodes().forEach(function (el) {
        var p = posOf(el);
        bottom = Math.max(bottom, p.y + BOX_H);
        left = left === null ? p.x : Math.min(left, p.x);
      });
      position = { x: left || 16, y: nodes().length ? bottom + 64 : 16 };
    }
    position = { x: snap(position.x), y: snap(position.y) };
    return send([{ op: "add", type: type, position: position }], true, function (body) { return body.added[0]; });
  }

  function remove() {
    if (pickedEdge) {
      var edge = pickedEdge;
      pickedEdge = null;
      return send([{ op: "disconnect", from: edge.source, to: edge.target, branch: edge.branch }], true);
    }
    var ids = targets();
    if (!ids.length) { say("Select a step or an edge first (click it; Shift+click adds to the selection).", "error"); return; }
    picked.clear();
    var selected = canvas().dataset.selected;
    return send(ids.map(function (id) { return { op: "delete", step: id }; }), true, ids.indexOf(selected) >= 0 ? "" : selected);
  }

  function copy() {
    var ids = targets();
    if (!ids.length || !definition) { say("Select the steps to copy first.", "error"); return; }
    var steps = (definition.steps || []).filter(function (s) { return ids.indexOf(s.id) >= 0; }).map(function (s) {
      var step = JSON.parse(JSON.stringify(s));
      var el = node(s.id);
      if (el) step.position = posOf(el);
      return step;
    });
    var edges = (definition.edges || []).filter(function (e) { return ids.indexOf(e.from) >= 0 && ids.indexOf(e.to) >= 0; });
    sessionStorage.setItem("wf-canvas:clipboard", JSON.stringify({ steps: steps, edges: edges }));
    say("Copied " + steps.length + " step" + (steps.length > 1 ? "s" : "") + ". Paste with Ctrl+V.", "ok");
    tools();
  }

  function paste() {
    var clip = JSON.parse(sessionStorage.getItem("wf-canvas:clipboard") || "null");
    if (!clip || !clip.steps.length) { say("Nothing to paste: copy steps first.", "error"); return; }
    return send([{ op: "paste", steps: clip.steps, edges: clip.edges }], true).then(function (body) {
      if (!body) return;
      picked = new Set(body.added);
      showPicked();
      say("Pasted " + body.added.join(", ") + " (version " + body.version + ").", "ok");
    });
  }

  function undo(again) {
    var h = history(), from = again ? h.redo : h.undo, to = again ? h.undo : h.redo;
    var entry = from[from.length - 1];
    if (!entry) { say(again ? "Nothing to redo." : "Nothing to undo.", ""); return; }
    if (entry.at !== base()) {
      say("Someone saved version " + base() + " since; undo would overwrite it. Reload to see their change.", "error", true);
      return;
    }
    return send([{ op: "restore", version: again ? entry.redo : entry.restore }], false).then(function (body) {
      if (!body) return;
      h = history();
      from = again ? h.redo : h.undo; to = again ? h.undo : h.redo;
      from.pop();
      // The entry below was made on the version just restored: it now starts from its copy.
      if (from.length) from[from.length - 1].at = body.version;
      to.push({ at: body.version, restore: entry.restore, redo: entry.redo });
      store("history", h);
      say((again ? "Redone" : "Undone") + ": saved as version " + body.version + ".", "ok");
      tools();
    });
  }

  function connectMenu(stepId) {
    var menu = document.querySelector("#builder [data-connect-menu]");
    var source = node(stepId);
    if (!menu || !source) { say("Select a step to connect first.", "error"); return; }
    menu.replaceChildren();
    var title = document.createElement("p");
    title.className = "wf-connect-menu__title";
    title.textContent = "Connect " + stepId + " to…";
    menu.append(title);
    // One button per port and step; a parallel step's ports all start a branch: only its new one is offered.
    var ports = Array.prototype.map.call(source.querySelectorAll(".wf-port--out"), function (p) { return p.dataset.port || ""; });
    if (source.dataset.type === "parallel") ports = ports.slice(-1);
    var list = document.createElement("div");
    list.className = "wf-connect-menu__list";
    nodes().forEach(function (el) {
      if (el.dataset.step === stepId) return;
      ports.forEach(function (port) {
        if (port === "body" && source.dataset.type === "map" && !el.hasAttribute("data-map-body")) return;
        var b = document.createElement("button");
        b.type = "button";
        b.className = "btn btn--sm";
        b.textContent = port === "body" && source.dataset.type === "map" ? "body (run per item) = " + el.dataset.step
          : (port ? port + " → " : "→ ") + el.dataset.step;
        b.addEventListener("click", function () {
          closeMenu();
          refocus = stepId;
          send([{ op: "connect", from: stepId, to: el.dataset.step, port: port }], true);
        });
        list.append(b);
      });
    });
    if (source.dataset.type === "map" && source.querySelector('.wf-port-g.is-linked [data-port="body"]')) {
      var out = document.createElement("button");
      out.type = "button";
      out.className = "btn btn--sm btn--danger-ghost";
      out.textContent = "Take the body out as a step";
      out.addEventListener("click", function () {
        closeMenu();
        send([{ op: "disconnect", from: stepId, port: "body" }], true);
      });
      list.append(out);
    }
    canvas().querySelectorAll('.wf-edge[data-source="' + CSS.escape(stepId) + '"]').forEach(function (path) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "btn btn--sm btn--danger-ghost";
      b.textContent = "Disconnect " + (path.dataset.branch ? path.dataset.branch + " " : "") + "→ " + path.dataset.target;
      b.addEventListener("click", function () {
        closeMenu();
        send([{ op: "disconnect", from: stepId, to: path.dataset.target, branch: path.dataset.branch }], true);
      });
      list.append(b);
    });
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "btn btn--sm btn--ghost";
    cancel.textContent = "Cancel (Esc)";
    cancel.addEventListener("click", function () { closeMenu(); source.focus(); });
    list.append(cancel);
    menu.append(list);
    menu.dataset.step = stepId;
    menu.hidden = false;
    var first = list.querySelector("button");
    if (first) first.focus();
  }
  function closeMenu() {
    var menu = document.querySelector("#builder [data-connect-menu]");
    if (menu) menu.hidden = true;
  }

  var ACTIONS = {
    undo: function () { undo(false); }, redo: function () { undo(true); },
    connect: function () { var ids = targets(); if (ids.length) connectMenu(ids[0]); else say("Select a step to connect first.", "error"); },
    copy: copy, paste: paste, "delete": remove,
    layout: function () { send([{ op: "layout" }], true); },
    select: function () { setSelectMode(!selectMode); },
    "zoom-in": function () { setZoom(zoom * 1.25); }, "zoom-out": function () { setZoom(zoom / 1.25); }, fit: fit
  };

  function tools() {
    var box = document.querySelector("#builder [data-canvas-tools]");
    if (!box) return;
    box.hidden = false;
    var h = history();
    var set = function (name, on) { var b = box.querySelector('[data-canvas-action="' + name + '"]'); if (b) b.disabled = !on; };
    set("undo", h.undo.length > 0);
    set("redo", h.redo.length > 0);
    set("paste", !!sessionStorage.getItem("wf-canvas:clipboard"));
  }

  // ------------------------------------------------------------------ pointer gestures
  document.addEventListener("pointerdown", function (event) {
    var c = canvas();
    if (!c || event.button !== 0) return;
    var paletteItem = event.target.closest && event.target.closest("#builder [data-add-type]");
    if (paletteItem && editable()) {
      gesture = { kind: "palette", type: paletteItem.dataset.addType, x: event.clientX, y: event.clientY, ghost: null };
      return;
    }
    if (!c.contains(event.target)) return;
    closeMenu();
    var port = event.target.closest(".wf-port--out");
    var el = event.target.closest(".wf-node[data-step]");
    var hit = event.target.closest(".wf-edge-hit");
    if (port && el && editable()) {
      event.preventDefault();
      var start = posOf(el);
      var cx = parseFloat(port.getAttribute("cx")), cy = parseFloat(port.getAttribute("cy"));
      var line = document.createElementNS("http://www.w3.org/2000/svg", "path");
      line.setAttribute("class", "wf-edge wf-edge--draft");
      svg().append(line);
      gesture = { kind: "connect", source: el.dataset.step, port: port.dataset.port || "", x0: cx, y0: cy, line: line, start: start };
    } else if (el && editable()) {  // a finger too: on empty canvas it pans, on a step it moves it
      var ids = picked.has(el.dataset.step) ? Array.from(picked) : [el.dataset.step];
      event.preventDefault();  // no native link drag, no text selection
      gesture = { kind: "move", el: el, ids: ids, x: event.clientX, y: event.clientY, p0: toDiagram(event.clientX, event.clientY), moved: false, shift: event.shiftKey };
    } else if (hit) {
      pickedEdge = { source: hit.dataset.source, target: hit.dataset.target, branch: hit.dataset.branch };
      picked.clear();
      showPicked();
      say("Edge " + pickedEdge.source + (pickedEdge.branch ? " (" + pickedEdge.branch + ")" : "") + " → " + pickedEdge.target + " selected: Delete removes it.", "");
    } else if (!el && (event.shiftKey || selectMode) && svg() && svg().contains(event.target)) {
      // A rectangle: the steps wholly inside it are selected (Shift adds to the selection).
      event.preventDefault();
      var at = toDiagram(event.clientX, event.clientY);
      var band = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      band.setAttribute("class", "wf-band");
      svg().append(band);
      gesture = { kind: "band", x0: at.x, y0: at.y, x1: at.x, y1: at.y, band: band, add: event.shiftKey };
      drawBand(gesture);
    } else if (!el && (event.pointerType === "mouse" || (editable() && svg() && svg().contains(event.target)))) {
      // An editable drawing takes every touch (CSS touch-action cannot tell a step from the
      // background inside an SVG), so a finger on the background pans here, page included.
      gesture = { kind: "pan", x: event.clientX, y: event.clientY, left: c.scrollLeft, top: c.scrollTop,
        touch: event.pointerType !== "mouse", pageY: window.scrollY };
      picked.clear(); pickedEdge = null; showPicked();
    }
  });

  function drawBand(g) {
    g.band.setAttribute("x", Math.min(g.x0, g.x1)); g.band.setAttribute("y", Math.min(g.y0, g.y1));
    g.band.setAttribute("width", Math.abs(g.x1 - g.x0)); g.band.setAttribute("height", Math.abs(g.y1 - g.y0));
  }
  function endBand(g) {
    g.band.remove();
    var left = Math.min(g.x0, g.x1), right = Math.max(g.x0, g.x1), top = Math.min(g.y0, g.y1), bottom = Math.max(g.y0, g.y1);
    if (right - left + bottom - top < DRAG_START) {  // a click, not a rectangle
      if (!g.add) { picked.clear(); pickedEdge = null; showPicked(); }
      return;
    }
    if (!g.add) picked.clear();
    pickedEdge = null;
    nodes().forEach(function (el) {
      var p = posOf(el);
      if (p.x >= left && p.y >= top && p.x + BOX_W <= right && p.y + BOX_H <= bottom) picked.add(el.dataset.step);
    });
    showPicked();
    say(picked.size ? picked.size + " step" + (picked.size > 1 ? "s" : "") + " selected: drag one to move them together, Delete removes them, Ctrl+C copies them." : "No step is wholly inside the rectangle.", "");
  }
  function setSelectMode(on) {
    selectMode = on;
    var c = canvas();
    if (c) c.classList.toggle("is-selecting", on);
    var button = document.querySelector('#builder [data-canvas-action="select"]');
    if (button) button.setAttribute("aria-pressed", on ? "true" : "false");
    say(on ? "Select area: drag over the steps to select. Press the button again to pan instead." : "", "");
  }

  document.addEventListener("pointermove", function (event) {
    if (!gesture) return;
    var c = canvas();
    if (gesture.kind === "band") {
      var to = toDiagram(event.clientX, event.clientY);
      gesture.x1 = to.x; gesture.y1 = to.y;
      drawBand(gesture);
    } else if (gesture.kind === "pan") {
      var wantTop = gesture.top - (event.clientY - gesture.y);
      c.scrollLeft = gesture.left - (event.clientX - gesture.x);
      c.scrollTop = wantTop;
      // A finger: what the canvas cannot scroll (on a phone it is as tall as its drawing), the page does.
      if (gesture.touch) window.scrollTo(window.scrollX, gesture.pageY + wantTop - c.scrollTop);
    } else if (gesture.kind === "move") {
      // In the diagram's units (the drawing may be scaled, not only zoomed): the step stays under the pointer.
      var now = toDiagram(event.clientX, event.clientY), dx = now.x - gesture.p0.x, dy = now.y - gesture.p0.y;
      if (!gesture.moved && Math.abs(event.clientX - gesture.x) + Math.abs(event.clientY - gesture.y) < DRAG_START) return;
      gesture.moved = true;
      gesture.delta = shift(gesture.ids, dx, dy);
      gesture.el.setAttribute("data-dragging", "");
    } else if (gesture.kind === "connect") {
      var p = toDiagram(event.clientX, event.clientY);
      gesture.line.setAttribute("d", curve(gesture.x0, gesture.y0, p.x, p.y));
    } else if (gesture.kind === "palette") {
      if (!gesture.ghost && Math.abs(event.clientX - gesture.x) + Math.abs(event.clientY - gesture.y) < DRAG_START) return;
      if (!gesture.ghost) {
        gesture.ghost = document.createElement("div");
        gesture.ghost.className = "wf-ghost wf-node--" + gesture.type;
        gesture.ghost.textContent = gesture.type;
        document.body.append(gesture.ghost);
      }
      gesture.ghost.style.left = event.clientX + "px";
      gesture.ghost.style.top = event.clientY + "px";
    }
  });

  document.addEventListener("pointerup", function (event) {
    var g = gesture;
    gesture = null;
    if (!g) return;
    // A click that follows this pointerup in the same task is the gesture's; none comes later.
    setTimeout(function () { suppressClick = false; }, 0);
    var c = canvas();
    // The browser may fold the last pointermove into the pointerup: the gesture ends where it does.
    if (g.kind === "band") {
      var end = toDiagram(event.clientX, event.clientY);
      g.x1 = end.x; g.y1 = end.y;
      suppressClick = true;
      endBand(g);
    } else if (g.kind === "move") {
      if (g.moved) {
        var last = toDiagram(event.clientX, event.clientY);
        g.delta = shift(g.ids, last.x - g.p0.x, last.y - g.p0.y);
        suppressClick = true;
        var still = moveOps(g.ids, g.delta).every(function (op) {
          var p = posOf(node(op.step));
          return op.position.x === p.x && op.position.y === p.y;
        });
        if (still) refresh(canvas().dataset.selected); else send(moveOps(g.ids, g.delta), true);
      } else if (g.shift) {
        suppressClick = true;
        if (picked.has(g.el.dataset.step)) picked.delete(g.el.dataset.step); else picked.add(g.el.dataset.step);
        pickedEdge = null;
        showPicked();
      } else {
        picked.clear(); pickedEdge = null; showPicked();
      }
    } else if (g.kind === "connect") {
      g.line.remove();
      var under = document.elementFromPoint(event.clientX, event.clientY);
      var target = under && under.closest && under.closest(".wf-node[data-step]");
      if (target && c.contains(target) && target.dataset.step !== g.source) {
        suppressClick = true;
        send([{ op: "connect", from: g.source, to: target.dataset.step, port: g.port }], true);
      } else {
        suppressClick = true;
        say("Drop the connection on another step to connect.", "");
      }
    } else if (g.kind === "palette" && g.ghost) {
      g.ghost.remove();
      var box = c.getBoundingClientRect();
      suppressClick = true;
      if (event.clientX >= box.left && event.clientX <= box.right && event.clientY >= box.top && event.clientY <= box.bottom) {
        var p = toDiagram(event.clientX, event.clientY);
        addStep(g.type, { x: p.x - BOX_W / 2, y: p.y - BOX_H / 2 });
      }
    }
  });

  document.addEventListener("pointercancel", function () {
    if (gesture && gesture.line) gesture.line.remove();
    if (gesture && gesture.band) gesture.band.remove();
    if (gesture && gesture.kind === "move") shift(gesture.ids, 0, 0);
    if (gesture && gesture.ghost) gesture.ghost.remove();
    gesture = null;
  });

  // The click that ends a drag, a connection or a shift-click is not a "open the panel" click.
  document.addEventListener("click", function (event) {
    if (suppressClick) {
      suppressClick = false;
      if (event.target.closest && (event.target.closest("#builder .wf-canvas") || event.target.closest("#builder [data-add-type]"))) {
        event.preventDefault();
        event.stopPropagation();
        return;
      }
    }
    var action = event.target.closest && event.target.closest("#builder [data-canvas-action]");
    if (action && canvas()) { ACTIONS[action.dataset.canvasAction](); return; }
    var item = event.target.closest && event.target.closest("#builder [data-add-type]");
    if (item && canvas() && editable()) addStep(item.dataset.addType, null);
  }, true);

  document.addEventListener("wheel", function (event) {
    var c = canvas();
    if (!c || !c.contains(event.target) || !(event.ctrlKey || event.metaKey)) return;
    event.preventDefault();
    setZoom(zoom * (event.deltaY < 0 ? 1.1 : 1 / 1.1));
  }, { passive: false });

  // ------------------------------------------------------------------ keyboard
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  function flushNudge() {
    if (!nudge) return;
    var n = nudge;
    nudge = null;
    clearTimeout(n.timer);
    refocus = n.ids[0];
    send(moveOps(n.ids, n.delta), true);
  }

  document.addEventListener("keydown", function (event) {
    var c = canvas();
    if (!c || typing(event.target) || event.altKey) return;
    var menu = document.querySelector("#builder [data-connect-menu]");
    if (event.key === "Escape") {
      if (menu && !menu.hidden) { closeMenu(); var back = node(menu.dataset.step); if (back) back.focus(); event.preventDefault(); return; }
      picked.clear(); pickedEdge = null; showPicked();
      return;
    }
    if (menu && menu.contains(event.target)) return;
    var mod = event.ctrlKey || event.metaKey;
    var focused = event.target.closest && event.target.closest(".wf-node[data-step]");
    var inCanvas = c.contains(event.target) || event.target === document.body ||
      (event.target.closest && event.target.closest("#builder [data-canvas-tools]"));
    if (!inCanvas) return;
    var key = event.key.toLowerCase();
    var done = true;
    if (mod && key === "z") undo(event.shiftKey);
    else if (mod && key === "y") undo(true);
    else if (mod && key === "c" && editable()) copy();
    else if (mod && key === "v" && editable()) paste();
    else if (mod && key === "a") { nodes().forEach(function (el) { picked.add(el.dataset.step); }); showPicked(); }
    else if (mod) done = false;
    else if ((key === "delete" || key === "backspace") && editable()) remove();
    else if (key === "+" || key === "=") setZoom(zoom * 1.25);
    else if (key === "-") setZoom(zoom / 1.25);
    else if (key === "f") fit();
    else if (key === "l" && editable()) ACTIONS.layout();
    else if (key === "c" && editable()) ACTIONS.connect();
    else if (key === " " && focused) {
      if (picked.has(focused.dataset.step)) picked.delete(focused.dataset.step); else picked.add(focused.dataset.step);
      showPicked();
    } else if (key.indexOf("arrow") === 0 && focused && editable()) {
      var by = event.shiftKey ? BIG_STEP : STEP;
      var d = { ArrowLeft: [-by, 0], ArrowRight: [by, 0], ArrowUp: [0, -by], ArrowDown: [0, by] }[event.key];
      var ids = picked.has(focused.dataset.step) ? Array.from(picked) : [focused.dataset.step];
      if (!nudge) nudge = { ids: ids, delta: { dx: 0, dy: 0 } };
      nudge.delta = shift(nudge.ids, nudge.delta.dx + d[0], nudge.delta.dy + d[1]);
      clearTimeout(nudge.timer);
      nudge.timer = setTimeout(flushNudge, 700);
      say("Moving " + ids.join(", ") + "; saved when you stop.", "");
    } else done = false;
    if (done) event.preventDefault();
  });

  // ------------------------------------------------------------------ after each swap
  document.addEventListener("htmx:beforeRequest", function (event) {
    var config = event.detail.requestConfig;
    postedFromPage = !!(config && config.verb === "post");
    pagePending = true;
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.successful) return;
    pagePending = false;
    othersSaved();
  });

  function ready() {
    var c = canvas();
    pagePending = false;
    if (!c) {
      clearTimeout(pollTimer);
      if (socket) { var s = socket; socket = null; socketOpen = false; s.close(); }
      return;
    }
    var now = base();
    // A side-panel save made a new version: it can be undone like the canvas's own edits.
    if (postedFromPage && seenBase !== null && now > seenBase) {
      var h = history();
      h.undo.push({ at: now, restore: seenBase, redo: now });
      h.redo = [];
      store("history", h);
    }
    postedFromPage = false;
    seenBase = Math.max(now, seenBase || 0);
    picked.forEach(function (id) { if (!node(id)) picked.delete(id); });
    if (pickedEdge && !c.querySelector('.wf-edge[data-source="' + CSS.escape(pickedEdge.source) + '"][data-target="' + CSS.escape(pickedEdge.target) + '"]')) pickedEdge = null;
    applyZoom();
    showPicked();
    tools();
    if (notice) { say(notice[0], notice[1]); notice = null; }
    if (refocus && node(refocus)) node(refocus).focus();
    refocus = null;
    c.classList.toggle("is-selecting", selectMode);
    var modeButton = document.querySelector('#builder [data-canvas-action="select"]');
    if (modeButton) modeButton.setAttribute("aria-pressed", selectMode ? "true" : "false");
    connectSocket();
    markLive();
    showPresence(present);
    tellSelected();
    load();
    othersSaved();
  }
  document.addEventListener("visibilitychange", function () { if (!document.hidden) load(); });

  document.addEventListener("htmx:afterSettle", function (event) {
    var builder = document.getElementById("builder");
    if (builder && (event.target === builder || builder.contains(event.target))) ready();
    else { pagePending = false; othersSaved(); }
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
