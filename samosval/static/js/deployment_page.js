/* Deployment page: badge, flags and action buttons follow the deployment's status
   (from the live stream's "status" events and from the answers to our own
   actions), and Start/Stop/Restart are sent without reloading the page. */
(function () {
  "use strict";
  var dataNode = document.getElementById("deployment-data");
  if (!dataNode) { return; }
  var data = JSON.parse(dataNode.textContent);
  var badgeHolder = document.querySelector("[data-status-badge]");
  var actionsBox = document.querySelector("[data-actions]");
  var messageBox = document.querySelector("[data-page-message]");
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var current = data.payload;

  function showMessage(text) {
    if (!messageBox) { return; }
    messageBox.textContent = text || "";
    messageBox.hidden = !text;
  }

  function renderBadge(status) {
    var badge = badgeHolder && badgeHolder.querySelector(".badge");
    if (!badge) { return; }
    badge.className = "badge status-" + status;
    badge.setAttribute("data-status", status);
    badge.textContent = data.statusLabels[status] || status;
  }

  function renderFlags(payload) {
    var byOperator = document.querySelector('[data-flag="stopped_by_operator"]');
    var restart = document.querySelector('[data-flag="needs_restart"]');
    var none = document.querySelector('[data-flag="none"]');
    if (byOperator) { byOperator.hidden = !payload.stopped_by_operator; }
    if (restart) { restart.hidden = !payload.needs_restart; }
    if (none) { none.hidden = payload.stopped_by_operator || payload.needs_restart; }
  }

  // The forms come from the page's <template data-action-forms> (rendered by the
  // same Jinja macro as the initial buttons); this only picks which ones show.
  var formTemplate = document.querySelector("template[data-action-forms]");

  function actionForm(action) {
    var source = formTemplate &&
      formTemplate.content.querySelector('[data-action-form="' + action + '"]');
    if (!source) { return null; }
    var form = source.cloneNode(true);
    form.removeAttribute("data-action-form");
    form.setAttribute("data-deployment-action", action);
    return form;
  }

  function renderActions(actions) {
    if (!actionsBox) { return; }
    var shown = Array.prototype.map.call(
      actionsBox.querySelectorAll("[data-deployment-action]"),
      function (form) { return form.getAttribute("data-deployment-action"); });
    if (shown.join() === actions.join()) { return; }  // keep focus where it is
    actionsBox.textContent = "";
    actions.map(actionForm).forEach(function (form) {
      if (form) { actionsBox.appendChild(form); }
    });
  }

  function apply(payload) {
    if (!payload || !payload.status) { return; }
    // A change that happened in the background (the engine, another user): a toast.
    if (current && current.status !== payload.status && window.samosvalToast && data.text.statusToast) {
      var note = data.text.statusToast[payload.status];
      if (note) { window.samosvalToast(note, payload.status === "failed" ? "error" : "success"); }
    }
    current = payload;
    renderBadge(payload.status);
    renderFlags(payload);
    renderActions(payload.actions || []);
  }

  function deleted() {
    renderActions([]);
    showMessage(data.text.deleted);
  }

  document.addEventListener("samosval:status", function (event) { apply(event.detail); });
  document.addEventListener("samosval:deleted", deleted);

  // Start/Stop/Restart without a reload; Delete leaves the page, so it stays a plain form.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var action = form && form.getAttribute && form.getAttribute("data-deployment-action");
    if (!action || action === "delete" || event.defaultPrevented || !window.fetch) { return; }
    event.preventDefault();
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Accept": "application/json", "X-CSRFToken": csrfMeta ? csrfMeta.content : ""}
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (response.ok) {
          showMessage("");
          buttons.forEach(function (b) { b.disabled = false; });
          if (body.status === "deleted") { deleted(); } else { apply(body); }
        } else {
          showMessage(body.error || data.text.actionFailed);
          buttons.forEach(function (b) { b.disabled = false; });
        }
      });
    }).catch(function () {
      showMessage(data.text.actionFailed);
      buttons.forEach(function (b) { b.disabled = false; });
    });
  });

  window.samosvalDeployment = {current: function () { return current; }};
})();
