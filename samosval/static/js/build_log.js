// The build page: poll /api/builds/<id>/log?offset=N every second until the build
// finishes, appending only the new text. Pauses while the tab is hidden.
// The log is shown as numbered lines with their time, grouped into collapsible
// steps ("Step 3/7 : RUN ..."), with follow/unfollow, copy and download.
(function () {
  "use strict";
  var dataEl = document.getElementById("build-data");
  if (!dataEl) { return; }
  var data = JSON.parse(dataEl.textContent);
  var logEl = document.getElementById("build-log");
  var bar = document.getElementById("build-progress-bar");
  var steps = document.getElementById("build-steps");
  var badge = document.querySelector("#build-status .badge");
  var imageLink = document.getElementById("build-image-link");
  var noImage = document.getElementById("build-no-image");
  var errorBox = document.getElementById("build-error");
  var live = document.getElementById("build-live");
  var cancel = document.getElementById("build-cancel");
  var tools = document.querySelector("[data-build-log-tools]");
  var follow = document.querySelector('[data-action="follow"]');
  var offset = data.offset;
  var finished = data.finished;
  var timer = null;
  var inFlight = false;
  var raw = "";          // the whole log text, for copy and download
  var pending = "";      // a partial last line, completed by the next chunk
  var lineCount = 0;
  var group = null;      // the step the next lines belong to
  var STEP = /^(Step \d+\/\d+ :|Cloning into |The push refers to |Successfully built |Build succeeded|ERROR: build failed)/;
  var TIME = /^(\d\d:\d\d:\d\d) (.*)$/;

  function setProgress(progress) {
    if (!bar) { return; }
    bar.style.width = Math.round(Math.max(0, Math.min(1, progress)) * 100) + "%";
    bar.parentNode.setAttribute("aria-valuenow", String(Math.round(progress * 100)));
  }

  function lineNode(text) {
    lineCount += 1;
    var node = document.createElement("span");
    node.className = "bl-line";
    node.setAttribute("data-line", String(lineCount));
    var match = TIME.exec(text);
    var time = document.createElement("span");
    time.className = "bl-time";
    time.textContent = match ? match[1] : "";
    var body = document.createElement("span");
    body.className = "bl-text";
    body.textContent = match ? match[2] : text;
    if (/^(ERROR|npm ERR!|E: )/.test(body.textContent) || / ERROR /.test(body.textContent)) {
      node.className += " bl-error";
    }
    node.appendChild(time);
    node.appendChild(body);
    return node;
  }

  function addLine(text) {
    var plain = (TIME.exec(text) || [null, null, text])[2];
    if (STEP.test(plain)) {
      group = document.createElement("details");
      group.className = "bl-step";
      group.open = true;
      var summary = document.createElement("summary");
      summary.appendChild(lineNode(text));
      group.appendChild(summary);
      logEl.appendChild(group);
      return;
    }
    (group || logEl).appendChild(lineNode(text));
  }

  function addText(text) {
    if (!text) { return; }
    raw += text;
    var parts = (pending + text).split("\n");
    pending = parts.pop();
    parts.forEach(addLine);
  }

  function atBottom() {
    return logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 30;
  }

  function toBottom() { logEl.scrollTop = logEl.scrollHeight; }

  function apply(payload) {
    if (payload.log) {
      addText(payload.log);
      if (follow && follow.checked) { toBottom(); }
    }
    offset = payload.offset;
    setProgress(payload.progress);
    if (steps) {
      steps.textContent = data.stepsText.replace("{done}", payload.steps_done)
        .replace("{total}", payload.steps_total);
    }
    if (badge && badge.dataset.status !== payload.status) {
      badge.className = "badge status-" + payload.status;
      badge.dataset.status = payload.status;
      badge.textContent = data.labels[payload.status] || payload.status;
    }
    if (payload.image_id && imageLink) {
      imageLink.href = data.imageUrl.replace("{image_id}", encodeURIComponent(payload.image_id));
      if (imageLink.hidden) { imageLink.textContent = data.openImage; }
      imageLink.hidden = false;
      if (noImage) { noImage.hidden = true; }
    }
    if (payload.status === "failed" && payload.error_message && errorBox) {
      errorBox.textContent = payload.error_message;
      var box = document.getElementById("build-error-box");
      if (box) { box.hidden = false; }
    }
    if (payload.finished) {
      if (!finished && window.samosvalToast && data.finishedText[payload.status]) {
        window.samosvalToast(data.finishedText[payload.status], payload.status === "success" ? "success" : "error");
      }
      finished = true;
      if (live) { live.hidden = true; }
      if (cancel) { cancel.hidden = true; }
    }
  }

  function poll() {
    timer = null;
    if (finished || document.hidden || inFlight) { schedule(); return; }
    inFlight = true;
    fetch(data.logUrl + "?offset=" + encodeURIComponent(offset), {
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      cache: "no-store"
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(apply).catch(function () {
      // A blip (server restart, network): try again on the next tick.
    }).then(function () {
      inFlight = false;
      schedule();
    });
  }

  function schedule() {
    if (!finished && timer === null) { timer = window.setTimeout(poll, 1000); }
  }

  // The server's text (a <pre>, readable without JavaScript) becomes the line view.
  var rawNode = logEl.querySelector(".build-log-raw");
  var initial = rawNode ? rawNode.textContent : "";
  if (rawNode) { rawNode.remove(); }
  addText(initial);
  if (tools) { tools.hidden = false; }

  if (follow) {
    follow.addEventListener("change", function () { if (follow.checked) { toBottom(); } });
    logEl.addEventListener("scroll", function () {
      if (!atBottom() && follow.checked && !finished) { follow.checked = false; }
    });
  }
  function setAll(open) {
    logEl.querySelectorAll("details.bl-step").forEach(function (step) { step.open = open; });
  }
  var expand = document.querySelector('[data-action="expand-all"]');
  var collapse = document.querySelector('[data-action="collapse-all"]');
  if (expand) { expand.addEventListener("click", function () { setAll(true); }); }
  if (collapse) { collapse.addEventListener("click", function () { setAll(false); }); }
  var copy = document.querySelector('[data-action="copy-log"]');
  if (copy) {
    copy.addEventListener("click", function () {
      var text = raw + pending;
      var done = function () { if (window.samosvalToast) { window.samosvalToast(data.copied, "success"); } };
      var failed = function () { if (window.samosvalToast) { window.samosvalToast(data.copyFailed, "error"); } };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, failed);
      } else {
        failed();
      }
    });
  }
  var download = document.querySelector('[data-action="download-log"]');
  if (download) {
    download.addEventListener("click", function () {
      var blob = new Blob([raw + pending], {type: "text/plain;charset=utf-8"});
      download.href = URL.createObjectURL(blob);
      window.setTimeout(function () { URL.revokeObjectURL(download.href); }, 10000);
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && !finished && timer === null && !inFlight) { poll(); }
  });

  setProgress(bar ? parseFloat(bar.dataset.progress || "0") : 0);
  toBottom();
  schedule();
}());
