// tunesmith dashboard. Every value from an experiment is data: it reaches the page through textContent, or
// through plotly as plotlyText writes it (plotly.js reads <a href>, <b>, <br> and %{...} in the texts it draws),
// never parsed as markup, its control characters written as their escapes (printable). The plots the server sends are escaped so already. Served as a file: the page allows no
// inline script.
(function () {
  "use strict";
  var B = document.body.dataset;

  // a user's string for a text plotly.js draws, shown as written, its control characters as their escapes
  // (tunesmith.plots._figure.plotly_text)
  function plotlyText(s) {
    return printable(s, true).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/%/g, "&#37;");
  }
  var CONTROL = B.control === "1";
  var CSRF = B.csrf;
  var main = document.getElementById("main");
  var PLOT_CONFIG = {responsive: true, displaylogo: false};
  // every plot waits for plotly.js (deferred before this file, so normally there already)
  var plotlyReady = new Promise(function (resolve) {
    if (window.Plotly) { resolve(); return; }
    var tag = document.querySelector('script[src$="/plotly.min.js"]');
    if (tag) tag.addEventListener("load", function () { resolve(); });
    window.addEventListener("load", function () { resolve(); });
  });
  function draw(node, data, layout, config) {
    return plotlyReady.then(function () { return Plotly.react(node, data, layout, config); });
  }
  window.__ts = {updates: 0, points: 0, errors: [], controls: 0};

  // A user's string as the page shows it: each control character (ESC, CR, NUL, C1, bidi overrides, a lone
  // surrogate) written as its escape (\x1b, \u202e), as tunesmith._display.printable writes it; with oneLine
  // also tab and newline (\t, \n), as the server writes the page's title and name. Every text el() draws goes
  // through it (one line, but in a <pre>), so none is obeyed or hidden by the browser.
  var CONTROL_CHARS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]/gu;
  function printable(s, oneLine) {
    var out = String(s).replace(CONTROL_CHARS, function (c) {
      var code = c.charCodeAt(0);
      return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0") : "\\u" + code.toString(16).padStart(4, "0");
    });
    return oneLine ? out.replace(/[\t\n]/g, function (c) { return c === "\t" ? "\\t" : "\\n"; }) : out;
  }
  function el(tag, attrs) {
    var node = document.createElement(tag);
    var oneLine = tag !== "pre";
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === undefined || v === null) return;
        if (k === "text") node.textContent = printable(v, oneLine);
        else if (k === "cls") node.className = v;
        else if (k === "on") Object.keys(v).forEach(function (e) { node.addEventListener(e, v[e]); });
        else node.setAttribute(k, String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(printable(c, oneLine)) : c);
    }
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function enc(s) { return encodeURIComponent(s); }
  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(5).replace(/\.?0+(e|$)/, "$1");
    return String(v);
  }
  function age(s) {
    if (s === null || s === undefined) return "";
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return Math.round(s / 86400) + " d";
  }
  function trialName(id) { return "trial_" + String(id).padStart(5, "0"); }
  function nodeText(p) {  // a Ray placement: the node's address (or its id's start) and the actor's pid
    if (!p) return "";
    return (p.address || p.node.slice(0, 12)) + (p.pid !== null && p.pid !== undefined ? " pid " + p.pid : "");
  }
  function api(path) {
    return fetch(path, {credentials: "same-origin", headers: {Accept: "application/json"}}).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.error || r.statusText);
        return body;
      });
    });
  }
  // A control command, once per click: the button stays disabled until the answer, and the request carries an
  // Idempotency-Key made for this click, so that sending it again (below, when no answer came back: the server may
  // have queued it) is answered as the first time and never applied twice. crypto.getRandomValues, not
  // crypto.randomUUID: a dashboard served over plain http off loopback is not a secure context.
  function requestKey() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
  }
  // Resolves to whether the command was queued (a 200 answer).
  function control(name, command, msg, button) {
    if (button) {
      if (button.disabled) return Promise.resolve(false);
      button.disabled = true;
    }
    window.__ts.controls += 1;
    var key = requestKey();
    msg.textContent = "sending: " + command.action + "...";
    function send(triesLeft) {
      return fetch("/api/e/" + enc(name) + "/control", {
        method: "POST", credentials: "same-origin", body: JSON.stringify(command),
        headers: {"Content-Type": "application/json", "X-Tunesmith-CSRF": CSRF, "Idempotency-Key": key}
      }).catch(function (e) {  // no answer: the same request again, which the server applies at most once
        if (triesLeft <= 0) throw e;
        return new Promise(function (ok) { setTimeout(ok, 300); }).then(function () { return send(triesLeft - 1); });
      });
    }
    return send(2).then(function (r) { return r.json().catch(function () { return {}; }).then(function (b) {
      msg.textContent = r.ok ? "sent: " + command.action + " (the driver applies it on its next tick)" : printable(b.error || r.statusText, true);
      return r.ok;
    }); }, function (e) {
      msg.textContent = "not sent: " + command.action + " (" + printable(e.message, true) + "); the experiment's events say whether it was applied";
      return false;
    }).then(function (ok) { if (button) button.disabled = false; return ok; });
  }
  // A stop trial button in its state: none (live, labelled idle), "sending" (disabled, "stopping…") or "sent"
  // (disabled, "stop sent": the driver stops the trial at its next report). The table's and the trial page's alike.
  function drawStop(button, state, idle) {
    button.disabled = !!state;
    button.classList.toggle("pending", !!state);
    button.textContent = state === "sending" ? "stopping\u2026" : state === "sent" ? "stop sent" : idle;
    return button;
  }
  function live(ok, text) {
    var node = document.getElementById("live");
    node.textContent = printable(text, true);
    node.style.color = ok ? "#9c9" : "#f99";
  }
  function every(ms, fn) {
    var busy = false;
    function tick() {
      if (busy) return;
      busy = true;
      Promise.resolve().then(fn).then(function () { live(true, "live"); }, function (e) {
        live(false, "offline: " + e.message); window.__ts.errors.push(String(e));
      }).then(function () { busy = false; });
    }
    tick();
    return setInterval(tick, ms);
  }
  function crumb(parts) {
    var c = clear(document.getElementById("crumb"));
    parts.forEach(function (p) { c.appendChild(document.createTextNode(" / ")); c.appendChild(p); });
  }
  function countsText(counts) {
    return Object.keys(counts || {}).sort().map(function (k) { return counts[k] + " " + k.toLowerCase(); }).join(", ");
  }

  // ---------------------------------------------------------------------------------------- the list
  function listPage() {
    clear(main);
    main.appendChild(el("h1", {text: "Experiments"}));
    var body = el("tbody");
    main.appendChild(el("table", {id: "experiments"}, el("thead", null, el("tr", null,
      el("th", {text: "name"}), el("th", {text: "status"}), el("th", {text: "trials"}), el("th", {text: "by status"}),
      el("th", {text: "best"}), el("th", {text: "age"}))), body));
    every(1000, function () {
      return api("/api/experiments").then(function (data) {
        clear(body);
        data.experiments.forEach(function (e) {
          var best = e.best ? e.best.metric + " = " + fmt(e.best.value) + " (" + trialName(e.best.trial) + ")" : "";
          body.appendChild(el("tr", {"data-name": e.name},
            el("td", null, el("a", {href: "/e/" + enc(e.name), text: e.name})),
            el("td", {cls: "status-" + e.status, text: e.status}), el("td", {cls: "num trials", text: e.trials}),
            el("td", {text: countsText(e.counts)}), el("td", {text: best}), el("td", {text: age(e.age_s)})));
        });
        if (!data.experiments.length) body.appendChild(el("tr", null, el("td", {colspan: 6, text: "no experiments yet"})));
      });
    });
  }

  // ---------------------------------------------------------------------------------- an experiment
  // name: the experiment's folder name (addresses), shown: as the page shows it (control characters escaped)
  function experimentPage(name, shown) {
    crumb([el("a", {href: "/e/" + enc(name), text: shown})]);
    clear(main);
    var state = {sort: "id", offset: 0, limit: 50, status: "", q: "", metric: null, summary: null,
                 x: "training_iteration", final: "last",
                 curves: {}, pageIds: [], plotsDrawn: {}};
    var head = el("div", {id: "summary"});
    var msg = el("span", {cls: "msg"});
    var metricSel = el("select", {id: "metric"});
    var xSel = el("select", {id: "x-axis"}, el("option", {value: "training_iteration", text: "training_iteration"}));
    var finalSel = el("select", {id: "final"});
    [["last", "last result"], ["best", "best result"], ["mean_last", "mean of the last 5"]].forEach(function (f) {
      finalSel.appendChild(el("option", {value: f[0], text: f[1]}));
    });
    var filter = el("input", {id: "filter", placeholder: "filter config / status / id", size: 30});
    var statusSel = el("select", {id: "status-filter"}, el("option", {value: "", text: "any status"}));
    ["RUNNING", "PENDING", "PAUSED", "TERMINATED", "ERROR"].forEach(function (s) {
      statusSel.appendChild(el("option", {value: s, text: s.toLowerCase()}));
    });
    var pager = el("span", {cls: "muted"});
    var prev = el("button", {text: "\u2190", on: {click: function () { state.offset = Math.max(0, state.offset - state.limit); refreshTable(); }}});
    var next = el("button", {text: "\u2192", on: {click: function () { state.offset += state.limit; refreshTable(); }}});
    var table = el("table", {id: "trials"});
    var curves = el("div", {cls: "plot", id: "plot-curves"});
    var plots = el("div", {cls: "grid", id: "plots"});
    var notes = el("ul", {cls: "note"});
    var why = el("table", {id: "why"});
    var lineage = el("table", {id: "lineage"});
    var lineageGraph = el("div", {cls: "plot", id: "plot-lineage"});
    var nodesBox = el("div", {id: "nodes"});
    main.appendChild(el("h1", {text: shown}));
    main.appendChild(head);
    if (CONTROL) {
      var seconds = el("input", {type: "number", min: 1, value: 600, size: 6});
      var samples = el("input", {type: "number", min: 1, value: 10, size: 5});
      main.appendChild(el("div", {cls: "bar", id: "controls"},
        el("button", {cls: "danger", id: "stop-experiment", text: "stop experiment", on: {click: function () {
          if (confirm("Stop every trial of " + shown + "?")) control(name, {action: "stop_experiment"}, msg, this);
        }}}),
        el("button", {id: "extend-time", text: "extend time budget by", on: {click: function () {
          control(name, {action: "extend_time", seconds: Number(seconds.value)}, msg, this);
        }}}), seconds, "s",
        el("button", {id: "add-samples", text: "add samples", on: {click: function () {
          control(name, {action: "add_samples", n: Number(samples.value)}, msg, this);
        }}}), samples, msg));
    }
    main.appendChild(el("h2", {text: "Trials"}));
    main.appendChild(el("div", {cls: "bar"}, el("label", null, "metric ", metricSel), el("label", null, "x ", xSel),
      el("label", {title: "which value of a trial the sensitivity plot takes"}, "final ", finalSel), filter, statusSel, prev, next, pager));
    main.appendChild(table);
    main.appendChild(el("h2", {text: "Learning curves"}));
    main.appendChild(el("p", {cls: "note", text: "The trials of this page of the table; live, thinned to at most 1,000 points per trial."}));
    main.appendChild(curves);
    main.appendChild(plots);
    main.appendChild(notes);
    main.appendChild(el("h2", {text: "Why each trial stopped or paused"}));
    main.appendChild(why);
    main.appendChild(nodesBox);
    main.appendChild(el("h2", {text: "PBT lineage (exploits)"}));
    main.appendChild(el("p", {cls: "note", text: "A line per trial and generation; an arrow per exploit, from the trial copied at the iteration copied, labelled with the config it changed."}));
    main.appendChild(lineageGraph);
    main.appendChild(lineage);

    // The trials table is redrawn from polled data every second, so its stop buttons are drawn from this, by trial
    // id: "sending" while the request is in flight, then "sent" (the driver stops the trial at its next report)
    // until a redraw shows the trial no longer running. Never a live button for a stop already on its way; one
    // that was not sent (an error, or no answer) leaves the button live again.
    var stopping = {};
    function stopButton(id) {
      return drawStop(el("button", {cls: "danger stop-trial", on: {click: function () { stopTrial(id); }}}),
                      stopping[id], "stop");
    }
    function redrawStop(id) {
      var old = table.querySelector('tr[data-trial="' + Number(id) + '"] button.stop-trial');
      if (old) old.parentNode.replaceChild(stopButton(id), old);
    }
    function stopTrial(id) {
      if (stopping[id]) return;
      stopping[id] = "sending";
      redrawStop(id);
      control(name, {action: "stop_trial", trial_id: id}, msg).then(function (ok) {
        if (ok) stopping[id] = "sent"; else delete stopping[id];
        redrawStop(id);
      });
    }

    var typing;
    filter.addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(function () { state.q = filter.value; state.offset = 0; refreshTable(); }, 250);
    });
    statusSel.addEventListener("change", function () { state.status = statusSel.value; state.offset = 0; refreshTable(); });
    xSel.addEventListener("change", function () { state.x = xSel.value; state.curves = {}; refreshCurves(); refreshPlots(); });
    finalSel.addEventListener("change", function () { state.final = finalSel.value; refreshPlots(); });
    metricSel.addEventListener("change", function () {
      state.metric = metricSel.value; state.curves = {}; state.plotsVersion = null; refreshTable(); refreshCurves(); refreshPlots();
    });

    function refreshSummary() {
      return api("/api/e/" + enc(name) + "/summary").then(function (s) {
        state.summary = s;
        if (state.metric === null) {
          state.metric = (s.metric && s.metric[0]) || s.metrics[0] || "training_iteration";
          var options = s.metrics.slice();
          if (options.indexOf(state.metric) < 0) options.unshift(state.metric);
          options.forEach(function (m) { metricSel.appendChild(el("option", {value: m, text: m})); });
          s.metrics.forEach(function (m) { if (m !== "training_iteration") xSel.appendChild(el("option", {value: m, text: m})); });
          metricSel.value = state.metric;
        }
        var best = s.best ? s.best.metric + " = " + fmt(s.best.value) + " (" + trialName(s.best.trial) + ", " + s.best.mode + ")" : "-";
        clear(head).appendChild(el("table", {cls: "facts"}, el("tbody", null,
          el("tr", null, el("th", {text: "status"}), el("td", {cls: "status-" + s.status, id: "exp-status", text: s.status})),
          el("tr", null, el("th", {text: "trials"}), el("td", {id: "trial-count", text: s.trials + " (" + countsText(s.counts) + ")"})),
          el("tr", null, el("th", {text: "results"}), el("td", {text: s.results})),
          el("tr", null, el("th", {text: "best"}), el("td", {text: best})),
          el("tr", null, el("th", {text: "scheduler"}), el("td", {text: s.scheduler || ""})),
          el("tr", null, el("th", {text: "age"}), el("td", {text: age(s.age_s)})))));
      });
    }

    function sortHeader(label, key) {
      var mark = state.sort === key ? " \u25b2" : state.sort === "-" + key ? " \u25bc" : "";
      return el("th", {cls: "sort", "data-sort": key, text: label + mark, on: {click: function () {
        state.sort = state.sort === key ? "-" + key : key; state.offset = 0; refreshTable();
      }}});
    }
    function refreshTable() {
      if (state.metric === null) return Promise.resolve();
      var q = "offset=" + state.offset + "&limit=" + state.limit + "&sort=" + enc(state.sort) + "&status=" + enc(state.status) + "&q=" + enc(state.q);
      return api("/api/e/" + enc(name) + "/trials?" + q).then(function (page) {
        var metrics = [state.metric];
        (page.primary || []).forEach(function (m) { if (metrics.indexOf(m) < 0) metrics.push(m); });
        var params = [];
        page.rows.forEach(function (r) {
          Object.keys(r.config).forEach(function (k) { if (params.indexOf(k) < 0 && params.length < 10) params.push(k); });
        });
        var headRow = el("tr", null, sortHeader("trial", "id"), sortHeader("status", "status"),
          sortHeader("iteration", "iteration"), sortHeader("failures", "failures"));
        if (page.placed) headRow.appendChild(el("th", {text: "node"}));
        metrics.forEach(function (m) { headRow.appendChild(sortHeader(m, "m:" + m)); });
        params.forEach(function (p) { headRow.appendChild(sortHeader(p, "c:" + p)); });
        if (CONTROL) headRow.appendChild(el("th"));
        var body = el("tbody");
        page.rows.forEach(function (r) {
          var tr = el("tr", {"data-trial": r.id},
            el("td", null, el("a", {href: "/e/" + enc(name) + "/t/" + r.id, text: trialName(r.id)})),
            el("td", {cls: "status-" + r.status, text: r.status}), el("td", {cls: "num", text: r.iteration}),
            el("td", {cls: "num", text: r.failures}));
          if (page.placed) tr.appendChild(el("td", {cls: "node", title: r.placement ? r.placement.node : null, text: nodeText(r.placement)}));
          metrics.forEach(function (m) { tr.appendChild(el("td", {cls: "num", text: fmt(r.metrics[m])})); });
          params.forEach(function (p) { tr.appendChild(el("td", {cls: "cfg", text: fmt(r.config[p])})); });
          if (CONTROL) {
            if (r.status !== "RUNNING" && stopping[r.id] === "sent") delete stopping[r.id];
            tr.appendChild(el("td", null, r.status === "RUNNING" ? stopButton(r.id) : null));
          }
          body.appendChild(tr);
        });
        clear(table).appendChild(el("thead", null, headRow));
        table.appendChild(body);
        pager.textContent = page.total ? (page.offset + 1) + "\u2013" + Math.min(page.total, page.offset + page.limit) + " of " + page.total : "no trials";
        var ids = page.rows.map(function (r) { return r.id; });
        if (ids.join() !== state.pageIds.join()) {
          state.pageIds = ids;
          Object.keys(state.curves).forEach(function (id) { if (ids.indexOf(Number(id)) < 0) delete state.curves[id]; });
          return refreshCurves();
        }
      });
    }

    function refreshCurves() {
      if (!state.pageIds.length || state.metric === null) return Promise.resolve();
      var metric = state.metric, x = state.x;
      var t = state.pageIds.map(function (id) {
        var c = state.curves[id];
        return c ? id + ":" + c.cursor[0] + ":" + c.cursor[1] : String(id);
      }).join(",");
      return api("/api/e/" + enc(name) + "/curves?metric=" + enc(metric) + "&x=" + enc(x) + "&t=" + t).then(function (data) {
        if (metric !== state.metric || x !== state.x) return;
        var changed = false;
        Object.keys(data.trials).forEach(function (id) {
          var d = data.trials[id];
          if (d.mode === "same") return;
          changed = true;
          var c = state.curves[id];
          if (d.mode === "replace" || !c) c = state.curves[id] = {x: [], y: []};
          c.x = c.x.concat(d.x); c.y = c.y.concat(d.y); c.cursor = d.cursor; c.status = d.status;
          if (c.x.length > 2 * data.cap) {  // keep it bounded: every other point, the last one kept
            var keep = function (_v, i, a) { return i % 2 === 0 || i === a.length - 1; };
            c.x = c.x.filter(keep); c.y = c.y.filter(keep);
          }
        });
        if (!changed && curves.classList.contains("js-plotly-plot")) return;
        var traces = state.pageIds.filter(function (id) { return state.curves[id]; }).map(function (id) {
          var c = state.curves[id];
          return {type: "scatter", mode: "lines", name: trialName(Number(id)), x: c.x, y: c.y,
                  line: {width: 1.5, dash: c.status === "ERROR" ? "dash" : "solid"}};
        });
        window.__ts.points = traces.reduce(function (n, tr) { return n + tr.x.length; }, 0);
        window.__ts.updates += 1;
        return draw(curves, traces, {margin: {t: 20}, xaxis: {title: {text: plotlyText(x)}},
          yaxis: {title: {text: plotlyText(metric)}}, showlegend: traces.length <= 20, uirevision: metric + "|" + x}, PLOT_CONFIG);
      });
    }

    function refreshPlots() {
      if (state.metric === null) return Promise.resolve();
      return api("/api/e/" + enc(name) + "/plots?metric=" + enc(state.metric) + "&x=" + enc(state.x) + "&final=" + enc(state.final)).then(function (data) {
        var key = JSON.stringify(data);
        if (key === state.plotsVersion) return;
        state.plotsVersion = key;
        var wanted = data.panels.map(function (p) { return p.title; });
        Array.prototype.slice.call(plots.children).forEach(function (s) {
          if (wanted.indexOf(s.dataset.title) < 0) plots.removeChild(s);
        });
        data.panels.forEach(function (p, i) {
          var section = plots.querySelector('section[data-index="' + i + '"]');
          if (!section || section.dataset.title !== p.title) {
            if (section) plots.removeChild(section);
            section = el("section", {"data-index": i, "data-title": p.title}, el("h2", {text: p.title}),
              el("p", {cls: "note", text: p.note}), el("div", {cls: "plot panel"}));
            plots.appendChild(section);
          }
          var fig = p.figure;
          draw(section.querySelector(".plot"), fig.data, fig.layout || {}, PLOT_CONFIG);
        });
        clear(notes);
        data.notes.forEach(function (n) { notes.appendChild(el("li", {text: n})); });
      });
    }

    function refreshEvents() {
      return api("/api/e/" + enc(name) + "/events").then(function (data) {
        clear(why).appendChild(el("thead", null, el("tr", null, el("th", {text: "trial"}), el("th", {text: "status"}),
          el("th", {text: "iteration"}), el("th", {text: "why"}))));
        var body = el("tbody");
        data.why.slice(0, 500).forEach(function (w) {
          body.appendChild(el("tr", null, el("td", null, el("a", {href: "/e/" + enc(name) + "/t/" + w.trial, text: trialName(w.trial)})),
            el("td", {cls: "status-" + w.status, text: w.status}), el("td", {cls: "num", text: w.iteration}),
            el("td", {text: w.reason})));
        });
        if (!data.why.length) body.appendChild(el("tr", null, el("td", {colspan: 4, cls: "muted", text: "no trial has stopped yet"})));
        why.appendChild(body);
        clear(lineage).appendChild(el("thead", null, el("tr", null, el("th", {text: "trial"}), el("th", {text: "copied from"}),
          el("th", {text: "at iteration"}), el("th", {text: "new config"}))));
        var lb = el("tbody");
        data.lineage.forEach(function (l) {
          lb.appendChild(el("tr", null, el("td", {text: trialName(l.trial)}), el("td", {text: trialName(l.source)}),
            el("td", {cls: "num", text: l.iteration}),
            el("td", {cls: "cfg", text: Object.keys(l.config).map(function (k) { return k + "=" + fmt(l.config[k]); }).join(", ")})));
        });
        if (!data.lineage.length) lb.appendChild(el("tr", null, el("td", {colspan: 4, cls: "muted", text: "no exploit (not a PBT run, or none yet)"})));
        lineage.appendChild(lb);
        if (data.lineage_graph) {
          var key = JSON.stringify(data.lineage_graph);
          if (key !== state.lineageVersion) {
            state.lineageVersion = key;
            draw(lineageGraph, data.lineage_graph.data, data.lineage_graph.layout, PLOT_CONFIG);
          }
        }
        clear(nodesBox);
        if (data.nodes.length) {
          nodesBox.appendChild(el("h2", {text: "Ray nodes (where each trial ran last)"}));
          var nb = el("tbody");
          data.nodes.forEach(function (n) {
            var links = el("td", {cls: "cfg"});
            n.trials.slice(0, 50).forEach(function (id, i) {
              if (i) links.appendChild(document.createTextNode(" "));
              links.appendChild(el("a", {href: "/e/" + enc(name) + "/t/" + id, text: trialName(id)}));
            });
            if (n.trials.length > 50) links.appendChild(document.createTextNode(" \u2026"));
            nb.appendChild(el("tr", {"data-node": n.node}, el("td", {text: n.address || ""}), el("td", {cls: "cfg", text: n.node}),
              el("td", {cls: "num", text: n.trials.length}), el("td", {text: countsText(n.counts)}), links));
          });
          nodesBox.appendChild(el("table", {id: "node-table"}, el("thead", null, el("tr", null, el("th", {text: "address"}),
            el("th", {text: "node id"}), el("th", {text: "trials"}), el("th", {text: "by status"}), el("th", {text: "trials"}))), nb));
        }
      });
    }

    refreshSummary().then(function () {
      every(1000, function () { return Promise.all([refreshSummary(), refreshTable()]); });
      every(500, refreshCurves);
      every(3000, refreshPlots);
      every(3000, refreshEvents);
    }, function (e) { main.appendChild(el("p", {cls: "msg", text: e.message})); });
  }

  // ---------------------------------------------------------------------------------------- a trial
  function trialPage(name, shown, id) {
    crumb([el("a", {href: "/e/" + enc(name), text: shown}), el("span", {text: trialName(id)})]);
    clear(main);
    var box = el("div");
    var msg = el("span", {cls: "msg"});
    main.appendChild(el("h1", {text: shown + " / " + trialName(id)}));
    // as the table's: once sent, disabled ("stop sent") until the page shows the trial no longer running, where it
    // goes away; not sent, live again
    var stopping = null;
    var stop = el("button", {id: "stop-trial", cls: "danger", on: {click: function () {
      if (stopping) return;
      drawStop(stop, stopping = "sending", "stop trial");
      control(name, {action: "stop_trial", trial_id: id}, msg).then(function (ok) {
        drawStop(stop, stopping = ok ? "sent" : null, "stop trial");
      });
    }}});
    if (CONTROL) main.appendChild(el("div", {cls: "bar"}, drawStop(stop, null, "stop trial"), msg));
    main.appendChild(box);
    every(2000, function () {
      return api("/api/e/" + enc(name) + "/t/" + id).then(function (t) {
        if (stopping === "sent" && t.status !== "RUNNING" && stop.parentNode) stop.parentNode.removeChild(stop);
        clear(box);
        var facts = el("tbody");
        [["status", t.status], ["iteration", t.iteration], ["failures (retries)", t.failures],
         ["parent", t.parent ? trialName(t.parent) + " at iteration " + t.parent_iteration : ""],
         ["resources", JSON.stringify(t.resources)]].concat(t.placement ? [["node", nodeText(t.placement) + " (" + t.placement.node + ")"]] : []).forEach(function (f) {
          facts.appendChild(el("tr", null, el("th", {text: f[0]}), el("td", {text: f[1]})));
        });
        box.appendChild(el("table", {cls: "facts"}, facts));
        box.appendChild(el("h2", {text: "Config"}));
        box.appendChild(el("pre", {id: "config", text: JSON.stringify(t.config, null, 2)}));
        if (t.error) {
          box.appendChild(el("h2", {text: "Error"}));
          box.appendChild(el("pre", {id: "error", text: t.error}));
        }
        box.appendChild(el("h2", {text: "Results (" + t.results_total + (t.results_stride > 1 ? ", every " + t.results_stride + "th shown" : "") + ")"}));
        var keys = [];
        t.results.forEach(function (r) { Object.keys(r).forEach(function (k) { if (keys.indexOf(k) < 0 && keys.length < 12) keys.push(k); }); });
        var rt = el("table", {id: "results"}, el("thead", null, el("tr")));
        var hr = rt.querySelector("tr");
        keys.forEach(function (k) { hr.appendChild(el("th", {text: k})); });
        var rb = el("tbody");
        t.results.slice(-200).reverse().forEach(function (r) {
          var tr = el("tr");
          keys.forEach(function (k) { tr.appendChild(el("td", {cls: "num", text: fmt(r[k])})); });
          rb.appendChild(tr);
        });
        rt.appendChild(rb);
        box.appendChild(rt);
        box.appendChild(el("h2", {text: "Checkpoints"}));
        var cl = el("ul");
        t.checkpoints.forEach(function (c) { cl.appendChild(el("li", {text: "iteration " + c.iteration + ": " + c.path})); });
        if (!t.checkpoints.length) cl.appendChild(el("li", {cls: "muted", text: "none kept"}));
        box.appendChild(cl);
        box.appendChild(el("h2", {text: "Events (retries, pauses, exploits, commands)"}));
        var el_ = el("ul");
        t.events.forEach(function (e) {
          var text = new Date(e.time * 1000).toLocaleTimeString() + "  " + e.kind +
            (e.iteration !== null ? " at iteration " + e.iteration : "") +
            (e.source ? " from " + trialName(e.source) : "") + (e.detail ? ": " + e.detail : "");
          var li = el("li", {text: text});
          if (e.traceback) li.appendChild(el("pre", {text: e.traceback}));
          el_.appendChild(li);
        });
        box.appendChild(el_);
        box.appendChild(el("h2", {text: "output.log (tail)"}));
        box.appendChild(el("pre", {id: "log", text: t.log === null ? "(no output.log)" : t.log}));
      });
    });
  }

  if (B.page === "list") listPage();
  // data-experiment: the name percent-encoded, as in the page's address (an HTML attribute keeps that as it is)
  else if (B.page === "experiment") experimentPage(decodeURIComponent(B.experiment), B.shown);
  else if (B.page === "trial") trialPage(decodeURIComponent(B.experiment), B.shown, Number(B.trial));
})();
