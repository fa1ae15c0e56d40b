// meterhub dashboards: draw each chart from the JSON beside it (no inline script; CSP script-src 'self').
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var charts = document.querySelectorAll("div.chart[data-spec]");
  charts.forEach(function (el) {
    var src = document.getElementById(el.getAttribute("data-spec"));
    if (!src || typeof Plotly === "undefined") { return; }
    var spec = JSON.parse(src.textContent);
    Plotly.newPlot(el, spec.data, spec.layout, { displaylogo: false, displayModeBar: false, responsive: true })
      .then(function () { el.setAttribute("data-rendered", "1"); });
  });
});
