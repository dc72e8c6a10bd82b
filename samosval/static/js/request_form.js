// Request form and list filters: login suggestions for <datalist>s from the
// user search API (its URL comes in data-suggest-url), the collaborator "Add" button, and the static-mode hint.
(function () {
  "use strict";

  var DELAY_MS = 150;

  function fillDatalist(list, logins) {
    while (list.firstChild) { list.removeChild(list.firstChild); }
    logins.forEach(function (login) {
      var option = document.createElement("option");
      option.value = login;
      list.appendChild(option);
    });
  }

  // Any input with data-suggest-url, data-suggest-role and a list= gets suggestions
  // as the user types; the role ("developer" or empty for anyone) filters them.
  function wireSuggestions(input) {
    var list = input.list;
    if (!list || !input.getAttribute("data-suggest-url")) { return; }
    var role = input.getAttribute("data-suggest-role");
    var timer = null;
    var lastQuery = null;
    function load() {
      var query = input.value.trim().toLowerCase();
      if (query === lastQuery) { return; }
      lastQuery = query;
      var url = input.getAttribute("data-suggest-url") + "?q=" + encodeURIComponent(query) +
        (role ? "&role=" + encodeURIComponent(role) : "");
      fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : []; })
        .then(function (logins) {
          // Drop stale answers: the user kept typing meanwhile.
          if (query === input.value.trim().toLowerCase() && Array.isArray(logins)) {
            fillDatalist(list, logins);
          }
        })
        .catch(function () { /* suggestions are a convenience; typing still works */ });
    }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(load, DELAY_MS);
    });
    input.addEventListener("focus", load);
  }

  function splitLogins(text) {
    return text.split(/[,;]/).map(function (part) { return part.trim(); })
      .filter(function (part) { return part.length > 0; });
  }

  // One control: the logins added so far as removable chips, and the picker that adds
  // one. The comma-separated field stays the form's value (and the whole control
  // without JavaScript); with it, it is hidden and kept in step with the chips.
  function wireCollaboratorAdd() {
    var button = document.querySelector('[data-action="add-collaborator"]');
    var picker = document.getElementById("collaborator-pick");
    var field = document.getElementById("collaborators");
    if (!button || !picker || !field) { return; }
    var chips = document.querySelector("[data-collaborator-chips]");
    var none = document.querySelector("[data-collaborators-none]");
    var raw = document.querySelector("[data-collaborators-raw]");
    var template = document.querySelector("template[data-chip-template]");
    function renderChips() {
      if (!chips || !template) { return; }
      chips.textContent = "";
      var logins = splitLogins(field.value);
      logins.forEach(function (login) {
        var chip = template.content.firstElementChild.cloneNode(true);
        chip.querySelector("[data-chip-login]").textContent = login;
        var remove = chip.querySelector('[data-action="remove-collaborator"]');
        remove.setAttribute("aria-label", remove.getAttribute("aria-label") + " " + login);
        remove.addEventListener("click", function () {
          field.value = splitLogins(field.value).filter(function (l) {
            return l.toLowerCase() !== login.toLowerCase();
          }).join(", ");
          renderChips();
          picker.focus();
        });
        chips.appendChild(chip);
      });
      chips.hidden = logins.length === 0;
      if (none) { none.hidden = logins.length > 0; }
    }
    if (chips && template && raw && !field.getAttribute("aria-invalid")) {
      raw.hidden = true;  // the chips show the list; an invalid list stays editable as text
    }
    renderChips();
    field.addEventListener("input", renderChips);
    function add() {
      var login = picker.value.trim().toLowerCase();
      if (!login) { return; }
      var logins = splitLogins(field.value);
      var known = logins.map(function (l) { return l.toLowerCase(); });
      if (known.indexOf(login) === -1) { logins.push(login); }
      field.value = logins.join(", ");
      picker.value = "";
      renderChips();
      picker.focus();
    }
    button.addEventListener("click", add);
    picker.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {  // add the login instead of submitting the form
        event.preventDefault();
        add();
      }
    });
  }

  function wireUpdateMode() {
    var mode = document.getElementById("update_mode");
    var commit = document.getElementById("target_commit");
    if (!mode || !commit) { return; }
    // Continuous mode follows the branch: the commit field does not apply, so it is
    // disabled (and not sent); static mode needs it.
    function sync() {
      var isStatic = mode.value === "static";
      commit.required = isStatic;
      commit.disabled = !isStatic;
      if (window.samosvalMarkRequired) { window.samosvalMarkRequired(); }
    }
    mode.addEventListener("change", sync);
    sync();
  }

  document.querySelectorAll("input[data-suggest-role]").forEach(wireSuggestions);
  wireCollaboratorAdd();
  wireUpdateMode();
})();
