/* The deployment page's releases table and notices (pin, pending approvals) stay
   current without a reload: when the live status says the current release, the
   status or the pin changed, or the releases JSON (polled every few seconds) no
   longer matches what the table shows, the two parts are fetched afresh from the
   page itself and swapped in. */
(function () {
  "use strict";
  var card = document.querySelector('[data-card="releases"]');
  if (!card || !window.fetch || !window.DOMParser) { return; }
  var url = card.getAttribute("data-releases-url");
  var busy = false;
  var lastKey = null;

  // The same string as the table's data-releases-signature, over the rows it shows.
  function signature(body) {
    var limit = +card.getAttribute("data-releases-limit") || body.releases.length;
    return body.releases.slice(0, limit).map(function (r) { return r.id + ":" + r.status + ";"; }).join("") +
      (body.current === null ? "None" : body.current);
  }

  function refresh() {
    if (busy) { return; }
    busy = true;
    fetch(window.location.pathname, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        ['[data-card="releases"]', "[data-release-notices]"].forEach(function (selector) {
          var now = document.querySelector(selector);
          var next = fresh.querySelector(selector);
          if (now && next) { now.replaceWith(document.importNode(next, true)); }
        });
        card = document.querySelector('[data-card="releases"]');
        document.dispatchEvent(new CustomEvent("samosval:releases"));
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }

  function poll() {
    if (document.hidden) { return; }
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body && card && signature(body) !== card.getAttribute("data-releases-signature")) { refresh(); }
      })
      .catch(function () {});
  }

  document.addEventListener("samosval:status", function (event) {
    var p = event.detail || {};
    var key = [p.status, p.current_release_id, p.pinned].join("|");
    if (lastKey !== null && key !== lastKey) { refresh(); }
    lastKey = key;
  });
  window.setInterval(poll, 4000);
})();
