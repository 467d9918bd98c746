/* llmtrader dashboard: draws the charts from the page's JSON and applies the live stream. Untrusted text is
   only ever set as textContent, never as HTML. */
(function () {
  "use strict";
  var LC = window.LightweightCharts;
  var charts = [];

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function ascending(points) {
    var out = [], last = null;
    points.forEach(function (p) {
      if (last !== null && p.time <= last) { out[out.length - 1] = p; return; }
      out.push(p); last = p.time;
    });
    return out;
  }

  function newChart(el) {
    var chart = LC.createChart(el, {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#333", attributionLogo: false },
      timeScale: { timeVisible: true, secondsVisible: false },
      rightPriceScale: { borderVisible: false },
    });
    charts.push(chart);
    return chart;
  }

  function equityChart(el) {
    var pts = readJSON(el.dataset.source) || [];
    if (!LC || !pts.length) { return; }
    var chart = newChart(el);
    var line = chart.addSeries(LC.LineSeries, { color: "#1f6feb", lineWidth: 2, title: "equity" });
    line.setData(ascending(pts.map(function (p) { return { time: Math.floor(p.time_ms / 1000), value: p.equity_usd }; })));
    var dd = chart.addSeries(LC.AreaSeries, {
      lineColor: "#b42318", topColor: "rgba(180,35,24,0.05)", bottomColor: "rgba(180,35,24,0.35)", title: "drawdown %",
    }, 1);
    dd.setData(ascending(pts.map(function (p) { return { time: Math.floor(p.time_ms / 1000), value: -(p.drawdown_pct || 0) }; })));
    chart.timeScale().fitContent();
    el.equitySeries = line;
  }

  function priceChart(el) {
    var s = readJSON(el.dataset.source);
    if (!LC || !s || !s.marks.length) { return; }
    var chart = newChart(el);
    var line = chart.addSeries(LC.LineSeries, { color: "#344054", lineWidth: 1, title: "mark" });
    line.setData(ascending(s.marks.map(function (m) { return { time: Math.floor(m[0] / 1000), value: m[1] }; })));
    var markers = s.fills.map(function (f) {
      var buy = f.side === "BUY";
      return {
        time: Math.floor(f.time_ms / 1000), position: buy ? "belowBar" : "aboveBar",
        color: buy ? "#116329" : "#b42318", shape: buy ? "arrowUp" : "arrowDown",
        text: (buy ? "B " : "S ") + f.qty + " @ " + f.price,
      };
    });
    markers.sort(function (a, b) { return a.time - b.time; });
    if (markers.length && LC.createSeriesMarkers) { LC.createSeriesMarkers(line, markers); }
    chart.timeScale().fitContent();
  }

  function section(account) {
    var all = document.querySelectorAll("section.account");
    for (var i = 0; i < all.length; i++) { if (all[i].dataset.account === account) { return all[i]; } }
    return null;
  }

  function addDecision(d) {
    var sec = section(d.account);
    if (!sec) { return; }
    var list = sec.querySelector("ul.decisions");
    if (!list || list.querySelector('li[data-id="' + CSS.escape(d.decision_id) + '"]')) { return; }
    var empty = list.querySelector("li.empty");
    if (empty) { empty.remove(); }
    var li = document.createElement("li");
    li.className = "new";
    li.dataset.id = d.decision_id;
    var a = document.createElement("a");
    a.href = "/decisions/" + encodeURIComponent(d.decision_id);
    a.textContent = d.created_at;
    li.appendChild(a);
    [d.outcome, d.execution].forEach(function (t) {
      if (!t) { return; }
      var tag = document.createElement("span");
      tag.className = "tag"; tag.textContent = t; li.appendChild(tag);
    });
    list.insertBefore(li, list.firstChild);
  }

  function applyCycle(c) {
    var sec = section(c.account);
    if (!sec) { return; }
    var last = sec.querySelector(".last-cycle");
    if (last) { last.textContent = c.started_at + " · " + c.outcome + (c.reason ? " · " + c.reason : ""); }
    if (c.equity_usd !== null && c.equity_usd !== undefined) {
      var eq = sec.querySelector(".equity-now");
      if (eq) { eq.textContent = Number(c.equity_usd).toFixed(2) + " USD"; }
      var chartEl = sec.querySelector(".equity-chart");
      if (chartEl && chartEl.equitySeries) {
        try { chartEl.equitySeries.update({ time: Math.floor(Date.parse(c.started_at) / 1000), value: c.equity_usd }); } catch (e) { /* an older point */ }
      }
    }
  }

  function live() {
    var status = document.getElementById("live");
    if (!status || !window.EventSource) { return; }
    var es = new EventSource("/api/v1/stream");
    es.onopen = function () { status.textContent = "Live updates: on"; };
    es.onerror = function () { status.textContent = "Live updates: reconnecting…"; };
    es.addEventListener("decision", function (e) { addDecision(JSON.parse(e.data)); });
    es.addEventListener("cycle", function (e) { applyCycle(JSON.parse(e.data)); });
  }

  document.querySelectorAll(".equity-chart").forEach(equityChart);
  document.querySelectorAll(".price-chart").forEach(priceChart);
  live();
})();
