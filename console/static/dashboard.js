// The live dashboard (console/pages/dashboard.py): the first snapshot comes with the
// page (data-initial), the next ones by server-sent events, one per poll.  Charts are
// Chart.js (/static/vendor/chart.umd.js); without it the tiles and tables still work.
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root) { return; }
  var RC_COLOURS = { "00": "#0b6e4f", "51": "#c77700", "55": "#7b3fa0", "91": "#a4262c",
                     "96": "#e03c31", "62": "#3a6ea5", "14": "#8c564b", "65": "#d62728" };
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];
  var charts = {};

  function colour(key, index) { return RC_COLOURS[key] || PALETTE[index % PALETTE.length]; }

  function minuteLabel(iso) {
    var at = new Date(iso);
    return ("0" + at.getHours()).slice(-2) + ":" + ("0" + at.getMinutes()).slice(-2);
  }

  function text(value) { return value === null || value === undefined ? "–" : String(value); }

  function percent(rate) { return (100 * rate).toFixed(1); }

  function cell(row, value, numeric) {
    var td = document.createElement("td");
    td.textContent = text(value);
    if (numeric) { td.className = "num"; }
    row.appendChild(td);
    return td;
  }

  function badges(td, kinds) {
    td.textContent = "";
    kinds.forEach(function (kind) {
      var span = document.createElement("span");
      span.className = "badge";
      span.textContent = kind + " spike";
      td.appendChild(span);
    });
  }

  function fill(id, rows, columns) {
    var body = document.querySelector("#" + id + " tbody");
    var fresh = document.createElement("tbody");
    rows.forEach(function (item) {
      var tr = document.createElement("tr");
      columns(tr, item);
      fresh.appendChild(tr);
    });
    body.parentNode.replaceChild(fresh, body);
  }

  function datasets(byKey, stacked, type) {
    return Object.keys(byKey).map(function (key, index) {
      return { label: key, data: byKey[key], backgroundColor: colour(key, index),
               borderColor: colour(key, index), borderWidth: type === "line" ? 2 : 0,
               pointRadius: 0, stack: stacked ? "all" : undefined, spanGaps: true };
    });
  }

  function chart(id, type, labels, byKey, stacked) {
    if (!window.Chart) { return; }
    var sets = datasets(byKey, stacked, type);
    if (!charts[id]) {
      charts[id] = new window.Chart(document.getElementById(id), {
        type: type, data: { labels: labels, datasets: sets },
        options: { animation: false, responsive: true, maintainAspectRatio: false,
                   interaction: { mode: "index", intersect: false },
                   plugins: { legend: { position: "bottom", labels: { boxWidth: 10 } } },
                   scales: { x: { stacked: stacked, ticks: { maxTicksLimit: 12 } },
                             y: { stacked: stacked, beginAtZero: true } } } });
      return;
    }
    charts[id].data.labels = labels;
    charts[id].data.datasets = sets;
    charts[id].update("none");
  }

  function tiles(values) {
    document.querySelectorAll("[data-tile]").forEach(function (el) {
      el.textContent = text(values[el.getAttribute("data-tile")]);
    });
  }

  function warn(snapshot) {
    var notes = [];
    if (!snapshot.database.ok) { notes.push("database unreachable: " + snapshot.database.error); }
    if (snapshot.switch && !snapshot.switch.available) {
      notes.push("switch metrics unavailable (" + Object.keys(snapshot.switch.errors).join(", ") +
                 "): no transport, latency or backlog figures");
    }
    var box = document.getElementById("dash-warning");
    box.textContent = notes.join("; ");
    box.hidden = notes.length === 0;
    document.querySelectorAll("[data-switch-only]").forEach(function (el) {
      el.hidden = snapshot.switch === null;
    });
  }

  // The charts start at the first minute with traffic (at most an hour, at least
  // MIN_MINUTES): a console started a few minutes ago shows those minutes wide.
  var MIN_MINUTES = 15;

  function firstBusy(series, length) {
    var first = length;
    [series.by_rc, series.by_transport, series.failures].forEach(function (byKey) {
      Object.keys(byKey).forEach(function (key) {
        var at = byKey[key].findIndex(function (v) { return v; });
        if (at >= 0 && at < first) { first = at; }
      });
    });
    return Math.max(0, Math.min(first, length - MIN_MINUTES));
  }

  function cut(byKey, from) {
    var out = {};
    Object.keys(byKey).forEach(function (key) { out[key] = byKey[key].slice(from); });
    return out;
  }

  function update(snapshot) {
    var all = snapshot.series;
    var from = firstBusy(all, snapshot.minutes.length);
    var labels = snapshot.minutes.slice(from).map(minuteLabel);
    var series = { by_rc: cut(all.by_rc, from), by_transport: cut(all.by_transport, from),
                   latency_ms: cut(all.latency_ms, from), failures: cut(all.failures, from),
                   backlog: all.backlog.slice(from) };
    tiles(snapshot.tiles);
    warn(snapshot);
    chart("chart-rc", "bar", labels, series.by_rc, true);
    if (snapshot.switch) {
      chart("chart-transport", "line", labels, series.by_transport, false);
      chart("chart-latency", "line", labels, series.latency_ms, false);
      chart("chart-backlog", "line", labels, { backlog: series.backlog }, false);
    }
    chart("chart-failures", "bar", labels, series.failures, false);
    fill("regions", snapshot.regions, function (tr, r) {
      cell(tr, r.level); cell(tr, r.code); cell(tr, r.requests, true); cell(tr, r.declined, true);
      cell(tr, r.timeouts, true); cell(tr, percent(r.decline_rate), true);
      cell(tr, percent(r.timeout_rate), true); badges(cell(tr, ""), r.spike);
    });
    fill("ewarongs", snapshot.ewarongs, function (tr, e) {
      cell(tr, e.mid); cell(tr, e.name); cell(tr, e.requests, true); cell(tr, e.declined, true);
      cell(tr, e.timeouts, true); cell(tr, percent(e.decline_rate), true);
      cell(tr, percent(e.timeout_rate), true); badges(cell(tr, ""), e.spike);
    });
    fill("terminals", snapshot.terminals.list, function (tr, t) {
      tr.className = t.status === "offline" ? "offline" : "";
      cell(tr, t.tid); cell(tr, t.status);
      cell(tr, t.last_seen_at ? new Date(t.last_seen_at).toLocaleString() : "–"); cell(tr, t.source);
    });
    feed("spike-alerts", snapshot.spike_alerts, function (a) {
      return minuteLabel(a.minute) + " " + a.level + " " + a.code + ": " + a.kind + " rate " +
        percent(a.rate) + " % over a baseline of " + percent(a.baseline) + " % (" +
        a.requests + " requests)";
    }, "spike");
    feed("rule-alerts", snapshot.rule_alerts, function (a) {
      var figures = Object.keys(a.detail).map(function (k) { return k + " " + a.detail[k]; });
      return new Date(a.at).toLocaleTimeString() + " " + a.rule + " (" + a.action + ") " +
        text(a.tid) + (a.mid ? " at " + a.mid : "") + (figures.length ? ": " + figures.join(", ") : "");
    }, "rule");
    document.getElementById("dash-status").textContent = "updated " +
      new Date(snapshot.generated_at).toLocaleTimeString() + " · records to #" +
      snapshot.last_record_id + " · poll " + snapshot.polls;
    root.setAttribute("data-polls", String(snapshot.polls));
  }

  function feed(id, items, line, kind) {
    var list = document.getElementById(id);
    list.textContent = "";
    items.forEach(function (item) {
      var li = document.createElement("li");
      li.className = kind;
      li.textContent = line(item);
      list.appendChild(li);
    });
  }

  update(JSON.parse(root.getAttribute("data-initial")));
  var source = new EventSource(root.getAttribute("data-events"));
  source.addEventListener("snapshot", function (e) { update(JSON.parse(e.data)); });
  source.onerror = function () {
    document.getElementById("dash-status").textContent = "reconnecting…";
  };
}());
