/* The dashboard's 14-day trends: two small Chart.js charts from #dashboard-data.
   Colours come from the theme's CSS variables. Without Chart.js the card says so;
   with no data, the empty-state text (rendered by the server) stays in place. */
(function () {
  "use strict";
  var node = document.getElementById("dashboard-data");
  if (!node) { return; }
  var data = JSON.parse(node.textContent);
  var trends = data.trends;

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function shortDay(iso) { return iso.slice(8, 10) + "." + iso.slice(5, 7); }

  if (typeof window.Chart !== "function") {
    var note = document.querySelector("[data-chart-fallback]");
    if (note) { note.hidden = false; }
    document.querySelectorAll(".trend-charts canvas").forEach(function (c) { c.hidden = true; });
    return;
  }
  var muted = cssVar("--text-muted", "#999");
  var grid = cssVar("--chart-grid", "#333");
  var labels = trends.labels.map(shortDay);
  var common = {
    animation: false, responsive: true, maintainAspectRatio: false,
    interaction: {mode: "index", intersect: false},
    plugins: {legend: {display: true, labels: {color: muted, boxWidth: 10}}},
    scales: {
      x: {ticks: {color: muted, maxRotation: 0, autoSkip: true, maxTicksLimit: 7}, grid: {color: grid}},
      y: {beginAtZero: true, ticks: {color: muted, precision: 0}, grid: {color: grid}}
    }
  };

  var activity = document.querySelector('canvas[data-trend="activity"]');
  if (activity && !trends.empty) {
    new window.Chart(activity, {
      type: "bar",
      data: {labels: labels, datasets: [
        {label: data.text.builds, data: trends.builds, backgroundColor: cssVar("--chart-builds", "#7aa2f7")},
        {label: data.text.deployments, data: trends.deployments, backgroundColor: cssVar("--chart-deployments", "#a3e635")}
      ]},
      options: common
    });
  }
  var failures = document.querySelector('canvas[data-trend="failures"]');
  var anyRate = trends.failure_rate.some(function (v) { return v !== null; });
  if (failures && anyRate) {
    var options = JSON.parse(JSON.stringify(common));
    options.scales.y.max = 100;
    options.plugins.legend.display = false;
    new window.Chart(failures, {
      type: "line",
      data: {labels: labels, datasets: [{
        label: data.text.failureRate, data: trends.failure_rate, spanGaps: false,
        borderColor: cssVar("--danger", "#ff5c5c"), backgroundColor: cssVar("--danger", "#ff5c5c"),
        borderWidth: 2, pointRadius: 3, tension: 0.25
      }]},
      options: options
    });
  }
}());
