// The build page: poll /api/builds/<id>/log?offset=N every second until the build
// finishes, appending only the new text. Pauses while the tab is hidden.
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
  var offset = data.offset;
  var finished = data.finished;
  var timer = null;
  var inFlight = false;

  function setProgress(progress) {
    if (!bar) { return; }
    bar.style.width = Math.round(Math.max(0, Math.min(1, progress)) * 100) + "%";
    bar.parentNode.setAttribute("aria-valuenow", String(Math.round(progress * 100)));
  }

  function atBottom() {
    return logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 30;
  }

  function apply(payload) {
    if (payload.log) {
      var stick = atBottom();
      logEl.appendChild(document.createTextNode(payload.log));
      if (stick) { logEl.scrollTop = logEl.scrollHeight; }
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

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && !finished && timer === null && !inFlight) { poll(); }
  });

  setProgress(bar ? parseFloat(bar.dataset.progress || "0") : 0);
  logEl.scrollTop = logEl.scrollHeight;
  schedule();
}());
