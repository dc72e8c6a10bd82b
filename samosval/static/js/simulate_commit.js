// "Simulate new commit": posts {repo_url, branch, commit} to the commit hook with the
// CSRF header and shows what happened in place (restarted n, marked m, or the reason).
(function () {
  "use strict";
  var form = document.getElementById("simulate-commit-form");
  if (!form) { return; }
  var input = document.getElementById("simulate-commit-sha");
  var button = form.querySelector("[data-action=simulate-commit]");
  var result = form.parentNode.querySelector("[data-simulate-result]");
  var meta = document.querySelector("meta[name=csrf-token]");

  function randomSha() {
    var bytes = new Uint8Array(20);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function show(outcome, text, ids) {
    result.hidden = false;
    result.dataset.outcome = outcome;
    result.className = "simulate-commit-result outcome-" + outcome;
    result.textContent = text;
    if (ids && ids.length) {
      var list = document.createElement("div");
      list.className = "muted small";
      ids.forEach(function (item, index) {
        if (index) { list.appendChild(document.createTextNode(" · ")); }
        list.appendChild(document.createTextNode(item.label + ": "));
        item.ids.forEach(function (id, n) {
          if (n) { list.appendChild(document.createTextNode(", ")); }
          var link = document.createElement(form.dataset.deploymentUrl ? "a" : "span");
          if (form.dataset.deploymentUrl) {
            link.href = form.dataset.deploymentUrl.replace("{deployment_id}", encodeURIComponent(id));
          }
          link.textContent = "#" + id;
          link.dataset.deploymentId = id;
          list.appendChild(link);
        });
      });
      result.appendChild(list);
    }
  }

  input.value = randomSha();
  form.querySelector("[data-action=new-sha]").addEventListener("click", function () {
    input.value = randomSha();
    input.focus();
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var sha = input.value.trim();
    if (!/^[0-9a-fA-F]{7,64}$/.test(sha)) {
      input.setAttribute("aria-invalid", "true");
      show("invalid", form.dataset.msgBadSha);
      return;
    }
    input.removeAttribute("aria-invalid");
    button.disabled = true;
    show("sending", form.dataset.msgWorking);
    fetch(form.dataset.url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRFToken": meta ? meta.content : ""
      },
      body: JSON.stringify({repo_url: form.dataset.repoUrl, branch: form.dataset.branch, commit: sha})
    }).then(function (response) {
      return response.json().then(function (data) { return {ok: response.ok, data: data}; });
    }).then(function (reply) {
      var data = reply.data || {};
      if (!reply.ok) {
        // Errors under /api: {"error": {"code", "message", "outcome", ...}}.
        var error = data.error || {};
        show(error.outcome || "refused", error.message || form.dataset.msgFailed);
        return;
      }
      var groups = [];
      if ((data.restarted_deployments || []).length) {
        groups.push({label: form.dataset.labelRestarted, ids: data.restarted_deployments});
      }
      if ((data.marked_deployments || []).length) {
        groups.push({label: form.dataset.labelMarked, ids: data.marked_deployments});
      }
      show(data.outcome, data.message, groups);
      // The next click is a new commit, not a replay of this one.
      input.value = randomSha();
    }).catch(function () {
      show("failed", form.dataset.msgFailed);
    }).then(function () {
      button.disabled = false;
    });
  });
})();
