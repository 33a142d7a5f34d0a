"use strict";
// The try-it page's behaviour. The form is in the HTML (built from the card
// by chalicelib/page.py); #config says how to read it. All text from the
// API or the card goes in with textContent, never as HTML.
(function () {
  var cfg = JSON.parse(document.getElementById("config").textContent);
  function $(id) { return document.getElementById(id); }
  // The API sits beside the page: "/model" under chalice local,
  // "/<stage>/model" on API Gateway, whether the URL ends in "/" or not.
  var base = location.pathname.replace(/\/*$/, "/");
  var names = cfg.features.map(function (f) { return f.name; });
  var fields = cfg.features.map(function (f, i) {
    return { name: f.name, kind: f.kind, el: $("f" + i), err: $("e" + i), slider: $("r" + i) };
  });
  // Longest name first, so a name that prefixes another never takes its errors.
  var byLength = fields.slice().sort(function (a, b) { return b.name.length - a.name.length; });
  var keyEl = $("apikey");
  var wantProba = !!cfg.classes, noProba = false;
  var NUMBER = /^\s*[+-]?(\d+\.?\d*(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?|nan|inf|infinity)\s*$/i;

  Array.prototype.forEach.call(document.querySelectorAll("a[data-path]"), function (a) {
    a.href = base + a.getAttribute("data-path");
  });
  $("endpoint").textContent = base + "model";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function say(id, text, bad) {
    $(id).textContent = text;
    $(id).classList.toggle("bad", !!bad);
  }
  function show(value) { return typeof value === "object" ? JSON.stringify(value) : String(value); }

  function valueOf(f) {
    if (f.kind === "boolean") return f.el.checked;
    if (f.kind === "number" || f.kind === "integer") {
      var s = f.el.value.trim(), n = Number(s);
      // Anything but a plain finite number goes as typed: the API says what
      // is wrong with it, next to the field.
      return s !== "" && isFinite(n) ? n : s;
    }
    return f.el.value;
  }

  function call(path, type, payload) {
    var headers = { "Content-Type": type };
    if (keyEl && keyEl.value) headers["x-api-key"] = keyEl.value;
    return fetch(base + path, { method: "POST", headers: headers, body: payload,
                                cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        return r.text().then(function (text) {
          var data = null;
          try { data = JSON.parse(text); } catch (e) { /* not JSON: said below */ }
          return { status: r.status, data: data, text: text };
        });
      });
  }

  function messageOf(res) {
    var d = res.data || {};
    return String(d.Message || d.message || res.text || "");
  }
  function explain(res) {
    var d = res.data || {}, msg = messageOf(res);
    if (res.status === 403) {
      if (cfg.auth === "api_key") {
        return "403 Forbidden: this stage needs a valid API key. " + (keyEl && keyEl.value
          ? "The key entered was refused." : "Enter one in the API key field above.");
      }
      if (cfg.auth === "iam") {
        return "403 Forbidden: this stage accepts only IAM (SigV4) signed requests, " +
          "which this page cannot make.";
      }
      return "403 Forbidden: " + msg;
    }
    if (res.status === 429) {
      return "429 Too Many Requests: the stage's usage plan throttled this key; try again later.";
    }
    return res.status + (d.Code ? " " + d.Code : "") + ": " + msg;
  }
  function isProbaRefusal(res) {
    return res.status === 422 && /^probabilities:/.test(messageOf(res));
  }
  function fieldNamed(msg) {
    for (var k = 0; k < byLength.length; k++) {
      var f = byLength[k];
      if (msg.indexOf("]." + f.name + ":") >= 0 ||
          msg.indexOf("feature " + JSON.stringify(f.name)) >= 0) return f;
    }
    return null;
  }
  function clearErrors() {
    fields.forEach(function (f) {
      f.err.textContent = "";
      f.el.classList.remove("invalid");
    });
  }

  // ---- one prediction -------------------------------------------------
  var seq = 0;
  function request() {
    var row = {};
    fields.forEach(function (f) { row[f.name] = valueOf(f); });
    var body = { instances: [cfg.text ? fields[0].el.value : row] };
    if (wantProba && !noProba) body.probabilities = true;
    return body;
  }
  function predict() {
    var mine = ++seq, body = request();
    say("status", "predicting\u2026");
    return call("model", "application/json", JSON.stringify(body)).then(function (res) {
      if (mine !== seq) return;  // a newer request is on its way
      if (body.probabilities && isProbaRefusal(res)) {
        noProba = true;  // a classifier without predict_proba: labels only
        return predict();
      }
      clearErrors();
      if (res.status === 200 && res.data) return render(res.data);
      var f = fieldNamed(messageOf(res));
      if (f && res.status < 500) {
        f.err.textContent = messageOf(res);
        f.el.classList.add("invalid");
      }
      $("answer").hidden = true;
      $("bars").textContent = "";
      say("status", explain(res), true);
    }, function (e) {
      if (mine === seq) say("status", "Could not reach the API: " + e.message, true);
    });
  }
  function render(d) {
    $("label").textContent = show(d.predictions[0]);
    $("answer").hidden = false;
    say("status", "");
    var bars = $("bars");
    bars.textContent = "";
    if (!d.classes || !d.probabilities) return;
    var probs = d.probabilities[0], top = probs.indexOf(Math.max.apply(null, probs));
    d.classes.forEach(function (c, k) {
      var row = el("div", k === top ? "bar top" : "bar"), track = el("div", "track"),
          fill = el("div", "fill");
      row.setAttribute("data-class", show(c));
      row.setAttribute("data-p", String(probs[k]));
      fill.style.width = (100 * probs[k]).toFixed(2) + "%";
      track.appendChild(fill);
      row.appendChild(el("span", "cls", show(c)));
      row.appendChild(track);
      row.appendChild(el("span", "pct", (100 * probs[k]).toFixed(1) + "%"));
      bars.appendChild(row);
    });
  }

  // ---- what-if: re-predict as numbers move (debounced) ----------------
  var timer = null;
  function soon() {
    if (!$("live").checked) return;
    clearTimeout(timer);
    timer = setTimeout(predict, 250);
  }
  fields.forEach(function (f) {
    if (f.slider) {
      f.slider.addEventListener("input", function () { f.el.value = f.slider.value; soon(); });
      f.el.addEventListener("input", function () {
        if (f.el.value !== "") f.slider.value = f.el.value;
      });
    }
    if (f.kind === "number" || f.kind === "integer") f.el.addEventListener("input", soon);
    if (f.kind === "boolean" || f.kind === "category") f.el.addEventListener("change", soon);
  });
  $("form").addEventListener("submit", function (e) {
    e.preventDefault();
    clearTimeout(timer);
    predict();
  });

  // ---- batch ----------------------------------------------------------
  function parseCsv(text) {
    var rows = [], row = [], field = "", quoted = false;
    for (var i = 0; i < text.length; i++) {
      var c = text[i];
      if (quoted) {
        if (c !== '"') field += c;
        else if (text[i + 1] === '"') { field += '"'; i++; }
        else quoted = false;
      } else if (c === '"') quoted = true;
      else if (c === ",") { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field); rows.push(row); row = []; field = "";
      } else field += c;
    }
    if (field !== "" || row.length) { row.push(field); rows.push(row); }
    // As the API reads it: fields trimmed, blank lines skipped.
    return rows.map(function (r) { return r.map(function (s) { return s.trim(); }); })
      .filter(function (r) { return r.length > 1 || r[0] !== ""; });
  }
  function looksLikeHeader(r) {
    return r.some(function (s) { return names.indexOf(s) >= 0; }) ||
      !r.some(function (s) { return NUMBER.test(s); });
  }
  function toCsv(rows) {
    return rows.map(function (r) {
      return r.map(function (s) {
        return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
      }).join(",");
    }).join("\n") + "\n";
  }
  function table(rows) {
    var t = $("table"), shown = Math.min(rows.length, 501);
    t.textContent = "";
    for (var i = 0; i < shown; i++) {
      var tr = el("tr");
      rows[i].forEach(function (s) { tr.appendChild(el(i ? "td" : "th", null, s)); });
      t.appendChild(tr);
    }
  }
  var link = $("download");
  function runBatch() {
    var text = $("csv").value, proba = wantProba && !noProba, header, rows, sent;
    link.hidden = true;
    $("table").textContent = "";
    if (cfg.text) {
      rows = text.split(/\r?\n/).filter(function (s) { return s.trim() !== ""; })
        .map(function (s) { return [s]; });
      header = names;
      var texts = { instances: rows.map(function (r) { return r[0]; }) };
      if (proba) texts.probabilities = true;
      sent = rows.length && call("model", "application/json", JSON.stringify(texts));
    } else {
      rows = parseCsv(text);
      header = rows.length && looksLikeHeader(rows[0]) ? rows.shift() : names;
      sent = rows.length && call(proba ? "model?probabilities=true" : "model", "text/csv", text);
    }
    if (!rows.length) {
      return say("bstatus", "Nothing to predict: paste, drop or choose rows first.", true);
    }
    say("bstatus", "predicting " + rows.length + " rows\u2026");
    sent.then(function (res) {
      if (proba && isProbaRefusal(res)) { noProba = true; return runBatch(); }
      if (res.status !== 200 || !res.data) return say("bstatus", explain(res), true);
      var d = res.data, n = d.predictions.length;
      if (n !== rows.length) {
        return say("bstatus", "The API answered " + n + " predictions for the " + rows.length +
          " rows read here; the table would not line up.", true);
      }
      var out = [header.concat(["prediction"]).concat(d.classes ? d.classes.map(function (c) {
        return "p(" + show(c) + ")";
      }) : [])];
      rows.forEach(function (r, i) {
        out.push(r.concat([show(d.predictions[i])]).concat(d.probabilities
          ? d.probabilities[i].map(String) : []));
      });
      table(out);
      if (link.href) URL.revokeObjectURL(link.href);
      link.href = URL.createObjectURL(new Blob([toCsv(out)], { type: "text/csv" }));
      link.hidden = false;
      say("bstatus", n + (n === 1 ? " row" : " rows") + " predicted" +
        (n > 500 ? " (the table shows 500; the download has all)" : "") + ".");
    }, function (e) { say("bstatus", "Could not reach the API: " + e.message, true); });
  }
  $("run").addEventListener("click", runBatch);
  var box = $("csv");
  function readFile(file) {
    file.text().then(function (text) { box.value = text; runBatch(); });
  }
  box.addEventListener("dragover", function (e) { e.preventDefault(); box.classList.add("over"); });
  box.addEventListener("dragleave", function () { box.classList.remove("over"); });
  box.addEventListener("drop", function (e) {
    e.preventDefault();
    box.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) readFile(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", function () {
    if (this.files.length) readFile(this.files[0]);
  });

  // A starting point for the batch box: the header and the form's row.
  if (!cfg.text && names.length) {
    box.value = toCsv([names, fields.map(function (f) { return String(valueOf(f)); })]);
  }
  // Where the stage is open, show the prefilled row's prediction at once.
  if (cfg.auth === "none" && names.length) predict();
})();
