"""The try-it page served at ``GET /``: one self-contained HTML document,
generated from the model card, to use the model from a browser.

What this module owns:

* the form, built from the card's typed features (:func:`form_fields` turns
  a card into field descriptions, :func:`render_form` into HTML): a number
  input per ``number``/``integer`` feature (with a slider when the card
  gives the ``range`` seen in training), a checkbox per ``boolean``, a
  select for a ``string`` with ``categories``, a text input for other
  strings, a text area for a text model; prefilled from the card's
  ``example``, else the range's midpoint, the first category, false, zero;
* the page around it (:func:`render_page`): the card's facts, the form, the
  batch box, an API-key field when the stage requires a key; its style and
  script are ``page.css`` and ``page.js`` beside this file, inlined;
* the Content-Security-Policy: nothing may load from anywhere (``default-src
  'none'``), the one inline style and the one inline script run because
  their sha256 is in the policy, and the script may only ``fetch`` its own
  origin. Hashes, not a nonce: the page is built once per process and
  served to everyone, and a nonce repeated across responses is no nonce;
  inlining keeps the page one route and one round trip;
* the cache: built once per process on the first ``GET /`` (never at
  import, never on the prediction path) and kept.

Nothing here imports more than the standard library and the card reader.
"""
import base64
import hashlib
import html
import json
import math
import os
import re
import threading

from chalicelib.schema.features import finite, usable_range


HERE = os.path.dirname(os.path.abspath(__file__))
MAX_PAGE_BYTES = 50 * 1024
HTML_TYPE = "text/html; charset=utf-8"
NUMERIC = ("number", "integer")

_cache = {}
_lock = threading.Lock()


# --------------------------------------------------------------------------
# The form, from the card.

def _number_text(value, kind):
    if kind == "integer" and float(value).is_integer():
        return str(int(value))
    return repr(float(value)) if isinstance(value, float) else str(value)


def is_text_model(card):
    features = card.get("features") or []
    return card.get("input") == "texts" or (
        len(features) == 1 and isinstance(features[0], dict)
        and features[0].get("type") == "text")


def _example_row(card):
    """The first row of the card's example request, or None."""
    example = card.get("example")
    rows = example.get("instances") if isinstance(example, dict) else None
    return rows[0] if isinstance(rows, list) and rows else None


def form_fields(card):
    """One dict per input of the form for a card (the raw ``model.json``
    dict): ``name``, ``kind`` (number, integer, boolean, category, string,
    text), ``value`` (the prefill) and, by kind, ``range``/``step`` or
    ``options``."""
    features = [f for f in card.get("features") or [] if isinstance(f, dict)]
    example = _example_row(card)
    if is_text_model(card):
        name = features[0].get("name", "text") if features else "text"
        value = example if isinstance(example, str) else ""
        return [{"name": name, "kind": "text", "value": value}]
    fields = []
    for position, feature in enumerate(features):
        name = str(feature.get("name"))
        kind = feature.get("type") or "number"
        if isinstance(example, dict):
            given = example.get(name)
        elif isinstance(example, list) and position < len(example):
            given = example[position]
        else:
            given = None
        field = {"name": name}
        if kind == "boolean":
            field.update(kind="boolean", value=given if isinstance(given, bool) else False)
        elif kind == "string" and isinstance(feature.get("categories"), list) \
                and feature["categories"]:
            options = [str(c) for c in feature["categories"]]
            field.update(kind="category", options=options,
                         value=str(given) if given is not None and str(given) in options
                         else options[0])
        elif kind not in NUMERIC:  # string, text, and a type this page does not know
            field.update(kind="text" if kind == "text" else "string",
                         value="" if given is None else str(given))
        else:
            bounds = usable_range(feature)
            field.update(kind=kind, range=bounds)
            if bounds:
                low, high = bounds
                # a round step of at most 1% of the range, so whole values sit on it
                field["step"] = "1" if kind == "integer" else \
                    "%g" % 10 ** math.floor(math.log10((high - low) / 100))
            if finite(given):
                value = given
            elif bounds:
                value = (low + high) / 2
                value = round(value) if kind == "integer" else float("%.6g" % value)
            else:
                value = 0
            field["value"] = _number_text(value, kind)
        fields.append(field)
    return fields


def render_form(fields):
    """The HTML of the form's inputs; every card string is escaped."""
    out = []
    for i, field in enumerate(fields):
        name = html.escape(field["name"])
        kind = field["kind"]
        ident = "f%d" % i
        common = 'id="%s" data-i="%d" data-kind="%s"' % (ident, i, kind)
        label = '<label for="%s">%s <small>%s</small></label>' % (
            ident, name, "category" if kind == "category" else kind)
        if kind in NUMERIC:
            slider = ""
            if field.get("range"):
                low, high = field["range"]
                slider = ('<input type="range" id="r%d" data-for="%s" min="%s" max="%s" '
                          'step="%s" value="%s" aria-label="%s slider">' % (
                              i, ident, _number_text(low, kind), _number_text(high, kind),
                              field["step"], html.escape(field["value"]), name))
            control = '%s<input type="number" %s step="%s" value="%s">' % (
                slider, common, "1" if kind == "integer" else "any", html.escape(field["value"]))
        elif kind == "boolean":
            control = '<input type="checkbox" %s%s>' % (common,
                                                        " checked" if field["value"] else "")
        elif kind == "category":
            options = "".join('<option%s>%s</option>' % (
                " selected" if option == field["value"] else "", html.escape(option))
                for option in field["options"])
            control = '<select %s>%s</select>' % (common, options)
        elif kind == "text":
            control = '<textarea %s rows="4">%s</textarea>' % (common,
                                                               html.escape(field["value"]))
        else:
            control = '<input type="text" %s value="%s">' % (common,
                                                             html.escape(field["value"]))
        out.append('<div class="field">%s<span class="ctl">%s</span>'
                   '<output class="err" id="e%d" role="alert"></output></div>'
                   % (label, control, i))
    return "\n".join(out)


# --------------------------------------------------------------------------
# The page.

def _asset(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def _sha256_source(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()) \
        .decode("ascii")


def _script_json(value):
    """JSON safe inside a <script> element: no "</script>" or "<!--" can
    close it early."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026")


def _facts(card):
    """(label, text) rows of what the card says about the model."""
    rows = []
    for key, label in (("version", "version"), ("task", "task"), ("estimator", "estimator"),
                       ("created_at", "created")):
        if card.get(key) not in (None, ""):
            rows.append((label, str(card[key])))
    classes = card.get("classes")
    if isinstance(classes, list) and classes:
        rows.append(("classes", ", ".join(map(str, classes))))
    metrics = card.get("metrics")
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            rows.append((str(key), json.dumps(value) if not isinstance(value, str) else value))
    return rows


def wants_probabilities(card):
    classes = card.get("classes")
    return card.get("task") == "classification" and isinstance(classes, list) and bool(classes)


def render_page(card, auth="none", problem=None):
    """``(html, content_security_policy)`` for a card (the raw dict; None
    when it cannot be read, then ``problem`` says why) and the stage's
    ``API_AUTH``."""
    card = card or {}
    fields = form_fields(card) if card else []
    config = {
        "features": [{"name": f["name"], "kind": f["kind"]} for f in fields],
        "text": bool(card) and is_text_model(card),
        "classes": card.get("classes") if wants_probabilities(card) else None,
        "auth": auth,
    }
    name = str(card.get("name") or "model")
    facts = "".join("<tr><th>%s</th><td>%s</td></tr>" % (html.escape(k), html.escape(v))
                    for k, v in _facts(card))
    if auth == "api_key":
        key_box = ('<p class="key"><label for="apikey">API key</label> '
                   '<input type="password" id="apikey" autocomplete="off" '
                   'placeholder="x-api-key of this stage"> <small>kept in this page only, sent '
                   'as <code>x-api-key</code></small></p>')
    elif auth == "iam":
        key_box = ('<p class="key warn">This stage accepts only IAM (SigV4) signed requests, '
                   'which a browser page cannot make: predictions here will be refused (403). '
                   'Use a signing client.</p>')
    else:
        key_box = ""
    if fields and config["text"]:
        batch_hint = "one text per line"
    else:
        batch_hint = "CSV: a header line naming the features (any order), or rows in " \
                     "feature order: " + ", ".join(f["name"] for f in fields)
    style = _asset("page.css")
    script = _asset("page.js")
    substitutions = {
        "TITLE": html.escape(name),
        "FACTS": facts,
        "PROBLEM": ('<p class="warn">%s</p>' % html.escape(problem)) if problem else "",
        "KEY": key_box,
        "FORM": render_form(fields),
        "BATCH_HINT": html.escape(batch_hint),
        "CONFIG": _script_json(config),
        "STYLE": style,
        "SCRIPT": script,
    }
    # One pass: a card string that looks like a placeholder stays text.
    text = re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: substitutions[m.group(1)], _asset("page.html"))
    csp = ("default-src 'none'; script-src %s; style-src %s; connect-src 'self'; "
           "img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
           % (_sha256_source(script), _sha256_source(style)))
    return text, csp


def page_of(service):
    """``(status, html, headers)`` of the page for ``service``, built once
    per process (per model directory and auth mode)."""
    auth = service.config.access.auth
    key = (service.config.model_dir, auth)
    cached = _cache.get(key)
    if cached is None:
        with _lock:
            cached = _cache.get(key)
            if cached is None:
                card, problem = service.displayed_card()
                card = card.raw if card is not None else None
                text, csp = render_page(card, auth, problem)
                headers = {"Content-Type": HTML_TYPE, "Content-Security-Policy": csp,
                           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                           "Cache-Control": "no-cache"}
                cached = _cache[key] = (200 if card else 503, text, headers)
    return cached
