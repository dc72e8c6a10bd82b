/* CPU and RAM charts (Chart.js) of one deployment. Polls the metrics JSON every
   2.5 s for the points after the last one it has (?since=), keeps at most 900,
   and pauses while the tab is hidden. Colours come from the theme's CSS
   variables. Without Chart.js the page says so and keeps the latest values as text. */
(function () {
  "use strict";
  var dataNode = document.getElementById("deployment-data");
  if (!dataNode) { return; }
  var data = JSON.parse(dataNode.textContent);
  var MAX_POINTS = 900;
  var INTERVAL_MS = 2500;
  var lastTs = null;
  var timer = null;
  var stopped = false;
  var inFlight = false;
  var charts = {};
  var latestNodes = {
    cpu: document.querySelector('[data-latest="cpu"]'),
    ram: document.querySelector('[data-latest="ram"]'),
    time: document.querySelector('[data-latest="time"]')
  };

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function makeChart(kind, title, colour) {
    var canvas = document.querySelector('canvas[data-chart="' + kind + '"]');
    if (!canvas) { return null; }
    var muted = cssVar("--text-muted", "#999");
    var grid = cssVar("--chart-grid", "#333");
    var chart = new window.Chart(canvas, {
      type: "line",
      data: {labels: [], datasets: [{
        label: title, data: [], borderColor: colour, backgroundColor: colour,
        borderWidth: 2, pointRadius: 0, pointHitRadius: 6, tension: 0.3, fill: false
      }]},
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, normalized: true,
        interaction: {mode: "index", intersect: false},
        plugins: {legend: {display: false}, tooltip: {enabled: true}},
        scales: {
          x: {title: {display: true, text: data.text.time, color: muted},
              ticks: {color: muted, maxTicksLimit: 8, autoSkip: true, maxRotation: 0},
              grid: {color: grid}},
          y: {min: 0, max: 100, title: {display: true, text: title, color: muted},
              ticks: {color: muted, stepSize: 25}, grid: {color: grid}}
        }
      }
    });
    chart.$canvas = canvas;
    return chart;
  }

  function setupCharts() {
    if (typeof window.Chart !== "function") {
      var note = document.querySelector("[data-chart-fallback]");
      if (note) { note.hidden = false; }
      document.querySelectorAll(".chart-box").forEach(function (box) { box.hidden = true; });
      return;
    }
    charts.cpu = makeChart("cpu", data.text.cpu, cssVar("--chart-cpu", "#f44"));
    charts.ram = makeChart("ram", data.text.ram, cssVar("--chart-ram", "#7af"));
  }

  function push(chart, labels, values) {
    if (!chart) { return; }
    var ds = chart.data.datasets[0].data;
    Array.prototype.push.apply(chart.data.labels, labels);
    Array.prototype.push.apply(ds, values);
    var extra = ds.length - MAX_POINTS;
    if (extra > 0) {
      chart.data.labels.splice(0, extra);
      ds.splice(0, extra);
    }
    chart.update("none");
    chart.$canvas.setAttribute("data-points", ds.length);
    var empty = chart.$canvas.parentNode.querySelector("[data-chart-empty]");
    if (empty) { empty.hidden = ds.length > 0; }
  }

  function showLatest(latest) {
    if (!latest) { return; }
    if (latestNodes.cpu) { latestNodes.cpu.textContent = latest.cpu.toFixed(1) + " %"; }
    if (latestNodes.ram) { latestNodes.ram.textContent = latest.ram.toFixed(1) + " %"; }
    if (latestNodes.time) { latestNodes.time.textContent = latest.label; }
  }

  function poll() {
    if (stopped || inFlight) { return; }
    inFlight = true;
    var url = data.metricsUrl + (lastTs !== null ? "?since=" + encodeURIComponent(lastTs) : "");
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (response.status === 404 || response.status === 401 || response.status === 403) {
          stop();  // deleted, signed out or no longer visible: nothing more to fetch
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        if (!body) { return; }
        if (body.ts.length) {
          lastTs = body.ts[body.ts.length - 1];
          push(charts.cpu, body.labels, body.cpu);
          push(charts.ram, body.labels, body.ram);
        }
        showLatest(body.latest);
      })
      .catch(function () { /* a missed poll is retried on the next tick */ })
      .then(function () { inFlight = false; });
  }

  function start() {
    if (timer || stopped) { return; }
    poll();
    timer = setInterval(poll, INTERVAL_MS);
  }

  function pause() {
    if (timer) { clearInterval(timer); timer = null; }
  }

  function stop() {
    stopped = true;
    pause();
  }

  setupCharts();
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { pause(); } else { start(); }
  });
  document.addEventListener("samosval:deleted", stop);
  if (!document.hidden) { start(); }
})();
