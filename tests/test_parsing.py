"""The parser's fast paths give exactly what the general path gives, and
fall back to it (and its precise messages) whenever a body is not plain."""
import json

import numpy as np
import pytest

from chalicelib.http import media
from chalicelib.schema import parsing
from chalicelib.http.errors import BadRequest, Unprocessable
from chalicelib.schema.parsing import Schema, parse_request

SCHEMA = Schema(["a", "b", "c"])


def parse(payload, schema=SCHEMA):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_request(body, "application/json", schema, 10_000)


@pytest.mark.parametrize("text,numbers_only", [
    ('{"instances": [[1, 2.5, -3e2]]}', True),
    ('{"instances": [[1, 2, 3]], "probabilities": true}', True),
    ('{"instances": [[1, 2, 3]], "probabilities": false}', True),
    ('{"instances": [[1, 2, true]], "probabilities": true}', False),
    ('{"instances": [[1, 2, null]]}', False),
    ('{"instances": [[1, 2, null]], "probabilities": false}', False),
    ('{"instances": [[1, 2, true]], "probabilities": false}', False),
    ('{"instances": [[1, 2, false]], "probabilities": true}', False),
    ('{"instances": [[1, NaN, -Infinity]], "probabilities": false}', True),
    ('{"instances": [[1, 2, "3"]]}', False),
    ('{"instances": [{"a": 1, "b": 2, "c": 3}]}', False),
    ('{"instances": [[1, 2, 3]], "instances": [[4, 5, 6]]}', None),
])
def test_only_a_body_of_plain_numbers_takes_the_fast_path(text, numbers_only):
    if numbers_only is None:
        with pytest.raises(BadRequest, match="duplicate key"):
            parsing._load_json(text)
        return
    assert parsing._load_json(text)[1] is numbers_only


@pytest.mark.parametrize("rows", [
    [[1, 2, 3]],
    [[5.1, -3.5e-3, 1e300]] * 3,
    [[i, i * 0.5, -i] for i in range(50)],
    [[2 ** 70, 0, 1]],
])
def test_fast_path_equals_the_general_path(rows):
    fast = parse({"instances": rows}).X
    general = parse({"instances": rows, "probabilities": False}).X
    slow = parsing._to_matrix(rows, SCHEMA, True, None, None)
    assert fast.dtype == np.float64 and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(general, slow)


@pytest.mark.parametrize("rows,message", [
    ([[1, 2, 3], [1, 2]], "instances[1]: expected 3 values"),
    ([[1, 2, [3]]], "instances[0][2] (c): expected a number, got a list"),
    ([[1, 2, 10 ** 400]], "instances[0][2] (c): number out of range"),
    ([[1e308, 1e308, 1]] * 3, None),  # the sum overflows, the values are finite
])
def test_fast_path_falls_back_to_precise_errors(rows, message):
    if message is None:
        assert parse({"instances": rows}).X.shape == (3, 3)
        return
    with pytest.raises(Unprocessable) as caught:
        parse({"instances": rows})
    assert message in caught.value.message


@pytest.mark.parametrize("n_rows", [1, 100])
def test_non_finite_values_are_found_on_both_sizes(n_rows):
    rows = [[1, 2, 3]] * n_rows
    body = json.dumps({"instances": rows})[:-2] + ", [1, NaN, 3]]}"
    with pytest.raises(Unprocessable, match=r"instances\[%d\]\[1\] \(b\): expected a finite number, got NaN" % n_rows):
        parse(body.encode())


def test_content_type_cache_is_bounded():
    for i in range(100):
        media.content_type("application/json; x=%d" % i)
    assert len(media._PARSED) <= media._PARSED_MAX


def parse_csv_text(text, schema=SCHEMA):
    return parse_request(text.encode(), "text/csv", schema, 10_000)


@pytest.mark.parametrize("field", ["١٢", "１２", "1_0", "²"])
def test_csv_numbers_are_ascii_only_as_in_json(field):
    with pytest.raises(Unprocessable, match="expected a number"):
        parse_csv_text("1,2,%s\n" % field)


def test_csv_number_check_cannot_backtrack():
    """A run of digits then a non-digit, the shape that made the old
    pattern quadratic: the possessive pattern gives it up in one pass, so
    sre's state count grows linearly (checked through a nested quantifier
    the engine would otherwise explore)."""
    assert "++" in parsing._CSV_NUMBER.pattern and "*+" in parsing._CSV_NUMBER.pattern
    assert parsing._CSV_NUMBER.match("1" * 100_000) and not parsing._CSV_NUMBER.match("1" * 100_000 + "x")
    with pytest.raises(Unprocessable, match='unknown feature "1111'):
        parse_csv_text("1" * 16_000 + "x\n")


def test_a_csv_line_with_millions_of_fields_is_refused_by_its_count():
    with pytest.raises(Unprocessable, match="CSV line 1: expected 3 values .* got 3000000"):
        parse_csv_text("," * 2_999_999 + "\n")
    with pytest.raises(Unprocessable, match='CSV header: unknown feature "x"'):
        parse_csv_text("a,b,c,x" + "," * 100_000 + "\n1,2,3\n")


@pytest.mark.parametrize("body", [
    '{"instances": [' + "{}," * 20_000 + "{}]}",
    '{"instances": [' + "[]," * 20_000 + "[]]}",
    '{"dataframe_records": [' + '{"a": 1},' * 20_000 + '{"a": 1}]}',
])
def test_floods_of_containers_are_refused_before_they_are_decoded(body):
    from chalicelib.http.errors import PayloadTooLarge
    with pytest.raises(PayloadTooLarge, match="limit of 10000 per request"):
        parse(body.encode())


def test_a_text_full_of_brackets_is_not_a_flood():
    schema = Schema([{"name": "text", "type": "text"}], input_kind="texts")
    text = "{[" * 20_000
    parsed = parse({"instances": [text]}, schema)
    assert parsed.X.tolist() == [text]


@pytest.mark.parametrize("row", [None, 5, True])
def test_a_text_models_row_that_is_no_text_is_named_as_such(row):
    schema = Schema([{"name": "text", "type": "text"}], input_kind="texts")
    with pytest.raises(Unprocessable) as exc:
        parse({"instances": [row, "a fine text"]}, schema)
    assert str(exc.value) == "instances[0]: expected a text (a string), got %s" % json.dumps(row)
    assert parse({"instances": [["a text as a one-value row"]]}, schema).X.tolist() == \
        ["a text as a one-value row"]


@pytest.mark.parametrize("field,expected", [
    ("9223372036854775807", 2**63 - 1), ("-9223372036854775808", -2**63),
    ("-000000000000000000000000001", -1),
    ("9223372036854775808", "CSV line 2, column n: integer out of range"),
    ("-9223372036854775809", "CSV line 2, column n: integer out of range"),
    ("1" * 5000, "CSV line 2, column n: integer out of range"),
])
def test_csv_integers_beyond_int64_are_a_422_like_json_ones(field, expected):
    schema = Schema([{"name": "n", "type": "integer"}], input_kind="dataframe")
    body = ("n\n%s\n" % field).encode()
    if isinstance(expected, int):
        X = parse_request(body, "text/csv", schema, 10_000).X
        assert X["n"].tolist() == [expected] and X["n"].dtype == np.int64
    else:
        with pytest.raises(Unprocessable) as exc:
            parse_request(body, "text/csv", schema, 10_000)
        assert str(exc.value) == expected  # not an OverflowError (a 500)
        # the same value as a JSON integer gets the same answer
        with pytest.raises(Unprocessable, match="integer out of range"):
            parse({"instances": [[int(field)]]} if len(field) < 4000 else
                  {"instances": [[2**64]]}, schema)
