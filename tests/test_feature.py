"""A card feature owns what every reader shows of it: the training range
(the form, the OpenAPI description), the JSON Schema of a value and the
Open Inference tensor datatype."""
import json

import pytest

from chalicelib.schema.features import Feature, usable_range


@pytest.mark.parametrize("spec, expected", [
    ({"name": "x", "range": [0.5, 7.25]}, (0.5, 7.25)),
    ({"name": "x", "range": [3, 3]}, None),            # empty
    ({"name": "x", "range": [5, 1]}, None),            # reversed
    ({"name": "x", "range": [0, float("inf")]}, None),
    ({"name": "x", "range": [True, 2]}, None),         # a boolean is not a bound
    ({"name": "x", "range": "0..1"}, None),
    ({"name": "x"}, None),
])
def test_a_range_is_read_once_and_leniently(spec, expected):
    assert usable_range(spec) == expected
    assert Feature(spec).range == expected


def test_each_type_has_its_tensor_datatype_and_json_type():
    kinds = {"number": ("FP64", "number"), "integer": ("INT64", "integer"),
             "boolean": ("BOOL", "boolean"), "string": ("BYTES", "string"),
             "text": ("BYTES", "string")}
    for kind, (datatype, json_type) in kinds.items():
        feature = Feature({"name": "f", "type": kind})
        assert feature.datatype == datatype
        assert feature.json_schema(False)["type"] == json_type
        assert feature.json_schema(True)["type"] == [json_type, "null"]


def test_categories_are_an_enum_only_when_unknown_ones_are_refused():
    refused = Feature({"name": "c", "type": "string", "categories": ["a", "b"]})
    assert refused.json_schema(True)["enum"] == ["a", "b", None]
    ignored = Feature({"name": "c", "type": "string", "categories": ["a", "b"],
                       "unknown_categories": "ignore"})
    assert "enum" not in ignored.json_schema(False)
    assert ignored.json_schema(False)["examples"] == ["a", "b"]


def test_metadata_and_openapi_read_the_same_features(api):
    from chalicelib.page import openapi
    from chalicelib.protocols import open_inference
    model = api.service.model.ready()
    features = model.card.schema.features
    inputs = open_inference.metadata(model)["inputs"]
    assert [(i["name"], i["datatype"]) for i in inputs] == [(f.name, f.datatype) for f in features]
    document = json.dumps(openapi.build_document(model.card, max_rows=10, max_body_bytes=1000))
    for feature in features:
        assert json.dumps(dict(feature.json_schema(False), title=feature.name)) in document
