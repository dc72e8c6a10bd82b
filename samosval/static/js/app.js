/* Every page: the phone menu button, toasts (window.samosvalToast) and the
   command palette (Ctrl+K or the "Go to" button). No inline script: CSP. */
(function () {
  "use strict";

  // --- the menu button (shown on narrow screens by theme.css) ---
  var toggle = document.querySelector('[data-action="nav-toggle"]');
  var nav = document.getElementById("mainnav");
  if (toggle && nav) {
    toggle.addEventListener("click", function () {
      var open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      nav.classList.toggle("open", open);
      if (open) {
        var first = nav.querySelector("a");
        if (first) { first.focus(); }
      }
    });
    document.addEventListener("keydown", function (event) {
      var menu = nav.querySelector("[data-nav-menu][open]");
      if (event.key === "Escape" && menu) {  // the admin menu first, then the phone menu
        menu.open = false;
        menu.querySelector("summary").focus();
        return;
      }
      if (event.key === "Escape" && nav.classList.contains("open")) {
        nav.classList.remove("open");
        toggle.setAttribute("aria-expanded", "false");
        toggle.focus();
      }
    });
  }

  // --- the admin menu (<details>): closes on a click or focus outside it ---
  var adminMenu = document.querySelector("[data-nav-menu]");
  if (adminMenu) {
    ["click", "focusin"].forEach(function (type) {
      document.addEventListener(type, function (event) {
        if (adminMenu.open && !adminMenu.contains(event.target)) { adminMenu.open = false; }
      });
    });
  }

  // --- required fields: a "*" after the label of every required control ---
  function markRequired() {
    document.querySelectorAll("form input, form select, form textarea").forEach(function (control) {
      if (!control.id) { return; }
      var label = document.querySelector('label[for="' + control.id + '"]');
      if (!label) { return; }
      var mark = label.querySelector(".required-mark");
      if (control.required && !control.disabled && !mark) {
        mark = document.createElement("span");
        mark.className = "required-mark";
        mark.setAttribute("aria-hidden", "true");
        mark.textContent = "*";
        label.appendChild(mark);
      } else if ((!control.required || control.disabled) && mark) {
        mark.remove();
      }
    });
  }
  window.samosvalMarkRequired = markRequired;
  markRequired();

  // --- toasts: short notes about things that happened in the background ---
  var toastBox = document.querySelector("[data-toasts]");
  function toast(message, kind) {
    if (!toastBox || !message) { return; }
    var item = document.createElement("div");
    item.className = "toast toast-" + (kind || "info");
    item.setAttribute("role", kind === "error" ? "alert" : "status");
    item.textContent = message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", toastBox.getAttribute("data-close-label") || "×");
    close.textContent = "×";
    close.addEventListener("click", function () { item.remove(); });
    item.appendChild(close);
    toastBox.appendChild(item);
    window.setTimeout(function () { item.remove(); }, kind === "error" ? 10000 : 6000);
  }
  window.samosvalToast = toast;

  // --- the command palette ---
  var palette = document.querySelector("[data-palette]");
  if (!palette) { return; }
  var input = palette.querySelector("[data-palette-input]");
  var list = palette.querySelector("[data-palette-results]");
  var empty = palette.querySelector("[data-palette-empty]");
  var opener = document.querySelector('[data-action="palette"]');
  var items = [];
  var active = -1;
  var seq = 0;
  var timer = null;
  var returnFocus = null;

  function render() {
    list.textContent = "";
    items.forEach(function (item, index) {
      var li = document.createElement("li");
      li.id = "palette-item-" + index;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", String(index === active));
      li.className = "palette-item" + (index === active ? " active" : "");
      var kind = document.createElement("span");
      kind.className = "palette-kind";
      kind.textContent = item.kind_label || item.kind;
      var label = document.createElement("span");
      label.className = "palette-label";
      label.textContent = item.label;
      li.appendChild(kind);
      li.appendChild(label);
      if (item.status_label) {
        var status = document.createElement("span");
        status.className = "badge status-" + item.status;
        status.textContent = item.status_label;
        li.appendChild(status);
      }
      li.addEventListener("mousedown", function (event) { event.preventDefault(); go(index); });
      list.appendChild(li);
    });
    empty.hidden = items.length > 0;
    if (active >= 0) {
      input.setAttribute("aria-activedescendant", "palette-item-" + active);
      var node = document.getElementById("palette-item-" + active);
      if (node && node.scrollIntoView) { node.scrollIntoView({block: "nearest"}); }
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function search() {
    var mine = ++seq;
    var url = input.getAttribute("data-url") + "?q=" + encodeURIComponent(input.value.slice(0, 100));
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : {items: []}; })
      .then(function (body) {
        if (mine !== seq) { return; }
        var kinds = JSON.parse(palette.getAttribute("data-kinds") || "{}");
        items = (body.items || []).map(function (item) {
          item.kind_label = kinds[item.kind] || item.kind;
          return item;
        });
        active = items.length ? 0 : -1;
        render();
      })
      .catch(function () { /* offline: the list stays as it was */ });
  }

  function go(index) {
    var item = items[index];
    if (item) { window.location.assign(item.url); }
  }

  function open() {
    returnFocus = document.activeElement;
    palette.hidden = false;
    input.value = "";
    search();
    input.focus();
  }

  function close() {
    palette.hidden = true;
    if (returnFocus && returnFocus.focus) { returnFocus.focus(); }
  }

  document.addEventListener("keydown", function (event) {
    if ((event.ctrlKey || event.metaKey) && (event.key === "k" || event.key === "K")) {
      event.preventDefault();
      if (palette.hidden) { open(); } else { close(); }
    }
  });
  if (opener) { opener.addEventListener("click", open); }
  palette.addEventListener("mousedown", function (event) {
    if (event.target === palette) { close(); }
  });
  input.addEventListener("input", function () {
    if (timer) { window.clearTimeout(timer); }
    timer = window.setTimeout(search, 120);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "ArrowDown" && items.length) {
      event.preventDefault();
      active = (active + 1) % items.length;
      render();
    } else if (event.key === "ArrowUp" && items.length) {
      event.preventDefault();
      active = (active - 1 + items.length) % items.length;
      render();
    } else if (event.key === "Enter") {
      event.preventDefault();
      go(active);
    } else if (event.key === "Escape") {
      event.preventDefault();
      close();
    } else if (event.key === "Tab") {
      event.preventDefault();  // the dialog is modal: focus stays in the search box
    }
  });
}());
