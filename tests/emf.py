"""Reading Embedded Metric Format records as CloudWatch would.

``validate`` checks a record against the JSON schema AWS publishes for EMF
(``tests/emf_schema.json``, which says where it was transcribed from) and the
rules of the specification's prose that the schema does not express: every
reference names a member of the root node, dimension targets are strings and
metric targets numbers (or arrays of at most 100 numbers), at most 100
metrics per directive. ``series`` lists the metrics CloudWatch extracts from a
record: one per metric and dimension set.
"""
import json
import numbers
from pathlib import Path

import jsonschema

SCHEMA = json.loads((Path(__file__).parent / "emf_schema.json").read_text())
_VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def validate(record):
    """Raise AssertionError (or jsonschema's ValidationError) unless ``record``
    (a dict) is a valid EMF document."""
    _VALIDATOR.validate(record)
    for directive in record["_aws"]["CloudWatchMetrics"]:
        assert len(directive["Metrics"]) <= 100, "more than 100 metric definitions"
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                assert key in record, f"dimension {key!r} is not a member of the root node"
                assert isinstance(record[key], str), f"dimension {key!r} is not a string"
        for metric in directive["Metrics"]:
            name = metric["Name"]
            assert name in record, f"metric {name!r} is not a member of the root node"
            value = record[name]
            values = value if isinstance(value, list) else [value]
            assert len(values) <= 100, f"metric {name!r} has more than 100 values"
            assert all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                       for v in values), f"metric {name!r} is not numeric: {value!r}"


def series(record):
    """{(namespace, metric name, unit, ((dimension, value), ...)): value} of
    every metric the record publishes."""
    out = {}
    for directive in record["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            dims = tuple(sorted((key, record[key]) for key in dimension_set))
            for metric in directive["Metrics"]:
                out[(directive["Namespace"], metric["Name"], metric.get("Unit", "None"),
                     dims)] = record[metric["Name"]]
    return out


def records(text):
    """The EMF records among the lines of ``text``."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if "_aws" in obj:
                found.append(obj)
    return found
