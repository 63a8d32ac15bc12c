/* keel web UI: metric charts (uPlot) and small page behaviours. No inline scripts (CSP). */
(function () {
  "use strict";
  var plots = [];

  function buildChart(fig) {
    if (fig.getAttribute("data-ready") || typeof uPlot === "undefined") return;
    var source = fig.getAttribute("data-spec");  // JSON, written by the server
    if (!source) return;
    var spec = JSON.parse(source);
    fig.setAttribute("data-ready", "1");
    var few = spec.x.length <= 40;
    var series = [{ label: spec.xlabel }];
    var data = [spec.x];
    spec.series.forEach(function (s) {
      series.push({
        label: s.label,
        stroke: s.color,
        width: 1.6,
        spanGaps: true,
        points: { show: few, size: 5, fill: s.color },
      });
      data.push(s.y);
    });
    var opts = {
      width: Math.max(240, fig.clientWidth - 8),
      height: 200,
      series: series,
      scales: { x: { time: false } },
      axes: [{ label: spec.xlabel, labelSize: 18, size: 34 }, { size: 56 }],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
    };
    plots.push({ plot: new uPlot(opts, data, fig), fig: fig });
  }

  function init(root) {
    var scope = root && root.querySelectorAll ? root : document;
    scope.querySelectorAll("[data-chart]").forEach(buildChart);
    if (scope !== document && scope.matches && scope.matches("[data-chart]")) buildChart(scope);
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      plots = plots.filter(function (p) { return document.body.contains(p.fig); });
      plots.forEach(function (p) {
        p.plot.setSize({ width: Math.max(240, p.fig.clientWidth - 8), height: 200 });
      });
    }, 150);
  });

  document.addEventListener("change", function (ev) {
    var target = ev.target;
    if (target && target.id === "only-diff") {
      var table = document.getElementById("diff-table");
      if (table) table.classList.toggle("hide-same", target.checked);
    }
  });

  // Keep the compare button honest: it needs two runs.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form && form.id === "compare-form") {
      var picked = document.querySelectorAll('input.pick[form="compare-form"]:checked').length;
      if (picked < 2) {
        ev.preventDefault();
        alert("Select at least two runs to compare.");
      }
    }
  });

  // htmx restores history from HTML snapshots, where canvases are blank: draw again
  document.addEventListener("htmx:historyRestore", function () {
    document.querySelectorAll("[data-chart]").forEach(function (fig) {
      fig.querySelectorAll(".uplot").forEach(function (el) { el.remove(); });
      fig.removeAttribute("data-ready");
    });
    plots = [];
    init(document);
  });

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  if (typeof htmx !== "undefined") {
    htmx.onLoad(init);
  } else {
    document.addEventListener("htmx:load", function (ev) { init(ev.target); });
  }
})();
