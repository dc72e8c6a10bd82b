/* The live log window: an EventSource on the deployment's shared log stream.
   - "Realtime" connects and disconnects it; a hidden tab disconnects too, and
     coming back reconnects with ?after=<last seq>, so nothing is lost or doubled
     (the browser's own reconnects send Last-Event-ID, which the server prefers).
   - At most MAX_LINES lines stay in the DOM; auto-scroll pauses while the user
     reads older lines; levels can be hidden; the indicator shows live/reconnecting/off. */
(function () {
  "use strict";
  var dataNode = document.getElementById("deployment-data");
  var win = document.querySelector("[data-log-window]");
  if (!dataNode || !win) { return; }
  var data = JSON.parse(dataNode.textContent);
  var MAX_LINES = 2000;
  var toggle = document.querySelector('[data-action="realtime-toggle"]');
  var indicator = document.querySelector("[data-conn]");
  var jump = document.querySelector('[data-action="scroll-latest"]');
  var lastSeq = parseInt(win.getAttribute("data-last-seq"), 10) || 0;
  var lastId = "";
  var source = null;
  var ended = false;
  var stick = true;
  var queue = [];
  var flushPending = false;

  function setConn(state) {
    if (!indicator) { return; }
    indicator.setAttribute("data-conn", state);
    indicator.className = "conn conn-" + state;
    indicator.textContent = data.conn[state] || state;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(ts) {
    var d = new Date(ts * 1000);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }
  function padLevel(level) { return (level + "     ").slice(0, 5); }

  function lineNode(line) {
    var node = document.createElement("span");
    node.className = "log-line log-" + line.level;
    node.setAttribute("data-seq", line.seq);
    node.setAttribute("data-level", line.level);
    node.textContent = clock(line.ts) + " " + padLevel(line.level) + " " + line.text;
    return node;
  }

  function noteNode(text) {
    var node = document.createElement("span");
    node.className = "log-line log-missed";
    node.textContent = text;
    return node;
  }

  function enqueue(node) {
    queue.push(node);
    if (flushPending) { return; }
    flushPending = true;
    // One DOM write per frame however many lines arrive; a timer when frames are throttled.
    if (document.hidden || !window.requestAnimationFrame) { setTimeout(flush, 50); }
    else { window.requestAnimationFrame(flush); }
  }

  function flush() {
    flushPending = false;
    if (!queue.length) { return; }
    var placeholder = win.querySelector("[data-placeholder]");
    if (placeholder) { placeholder.remove(); }
    var fragment = document.createDocumentFragment();
    queue.forEach(function (node) { fragment.appendChild(node); });
    queue = [];
    win.appendChild(fragment);
    var extra = win.childElementCount - MAX_LINES;
    while (extra-- > 0) { win.removeChild(win.firstElementChild); }
    if (stick) { win.scrollTop = win.scrollHeight; }
    win.setAttribute("data-last-seq", lastSeq);
  }

  function onLine(event) {
    var line;
    try { line = JSON.parse(event.data); } catch (e) { return; }
    if (line.seq <= lastSeq) { return; }  // already shown (never twice)
    lastSeq = line.seq;
    lastId = event.lastEventId || lastId;
    enqueue(lineNode(line));
  }

  function connect() {
    if (source || ended || !window.EventSource) { return; }
    setConn("reconnecting");
    // The last event id names the server run too ("<epoch>-<seq>"): after a restart
    // the server answers "reset" instead of skipping the new run's first lines.
    source = new EventSource(data.streamUrl + "?after=" + encodeURIComponent(lastId || lastSeq));
    source.onopen = function () { setConn("live"); };
    source.onmessage = onLine;
    source.addEventListener("status", function (event) {
      setConn("live");
      var payload;
      try { payload = JSON.parse(event.data); } catch (e) { return; }
      document.dispatchEvent(new CustomEvent("samosval:status", {detail: payload}));
    });
    source.addEventListener("missed", function (event) {
      var info = JSON.parse(event.data);
      enqueue(noteNode(data.text.missed.replace("{count}", info.missed)));
    });
    source.addEventListener("reset", function () {
      lastSeq = 0;
      enqueue(noteNode(data.text.reset));
    });
    source.addEventListener("end", function (event) {
      ended = true;
      disconnect();
      var reason = "deleted";
      try { reason = JSON.parse(event.data).reason || reason; } catch (e) { /* keep "deleted" */ }
      if (reason === "deleted") { document.dispatchEvent(new CustomEvent("samosval:deleted")); }
      else { enqueue(noteNode(data.text.ended[reason] || data.text.ended.no_access)); }
    });
    source.onerror = function () {
      if (!source) { return; }
      if (source.readyState === EventSource.CLOSED) {
        // Refused (401, 404, 429): the browser gives up, and so do we.
        source = null;
        setConn("off");
        if (toggle) { toggle.checked = false; }
      } else {
        setConn("reconnecting");  // the browser retries by itself with Last-Event-ID
      }
    };
  }

  function disconnect() {
    if (source) { source.close(); source = null; }
    setConn("off");
  }

  function wanted() { return !toggle || toggle.checked; }

  if (toggle) {
    toggle.addEventListener("change", function () {
      if (toggle.checked && !document.hidden) { connect(); } else { disconnect(); }
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { disconnect(); }
    else if (wanted()) { connect(); }
  });

  win.addEventListener("scroll", function () {
    stick = win.scrollTop + win.clientHeight >= win.scrollHeight - 24;
    if (jump) { jump.hidden = stick; }
  });
  if (jump) {
    jump.addEventListener("click", function () {
      stick = true;
      jump.hidden = true;
      win.scrollTop = win.scrollHeight;
    });
  }

  document.querySelectorAll("[data-level-filter]").forEach(function (box) {
    box.addEventListener("change", function () {
      win.classList.toggle("hide-" + box.getAttribute("data-level-filter"), !box.checked);
    });
  });

  document.addEventListener("samosval:deleted", function () {
    ended = true;
    disconnect();
  });

  win.scrollTop = win.scrollHeight;
  if (wanted() && !document.hidden) { connect(); }
})();
