"""The parse contract (docs/parse-contract.md): every value arrives exactly, or is quarantined with a reason."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from framework.consumer.values import ValueRules
from framework.testing.consumer import parse_values

UTC = dt.timezone.utc


def _one(schema, value, rules=None):
    result = parse_values(schema, [value], rules=rules)
    return result.rows, result.reasons


def test_big_numbers_land_exactly_in_decimal_columns(spark):
    rows, reasons = _one("time TIMESTAMP, id INT, amount DECIMAL(38,2), n DECIMAL(38,0)",
                         '{"time":"2026-01-05T06:00:00Z","id":1,"amount":12345678901234567890.12,'
                         '"n":123456789012345678901234567890}')
    assert reasons == []
    assert rows[0]["amount"] == Decimal("12345678901234567890.12")
    assert rows[0]["n"] == Decimal("123456789012345678901234567890")
    assert rows[0]["time"].astimezone(UTC) == dt.datetime(2026, 1, 5, 6, tzinfo=UTC)


@pytest.mark.parametrize("schema, value, reason", [
    ("amount DECIMAL(38,2)", '{"amount":12.345}', "field 'amount' expected decimal(38,2)"),
    ("amount DECIMAL(38,2)", '{"amount":1.5E-3}', "field 'amount' expected decimal(38,2)"),
    ("amount DECIMAL(5,2)", '{"amount":1234.5}', "field 'amount' expected decimal(5,2)"),
    ("n DECIMAL(38,0)", '{"n":1234567890123456789012345678901234567890}', "field 'n' expected decimal(38,0)"),
    ("amount DECIMAL(38,2)", '{"amount":true}', "field 'amount' expected decimal(38,2)"),
    ("id INT", '{"id":2147483648}', "field 'id' expected int, got 2147483648"),
    ("id INT", '{"id":1.5}', "field 'id' expected int, got 1.5"),
    ("id BIGINT", '{"id":1.0}', "field 'id' expected bigint, got 1"),
    ("id BIGINT", '{"id":9223372036854775808}', "field 'id' expected bigint, got 9223372036854775808"),
])
def test_a_number_that_does_not_fit_its_type_is_quarantined_not_rounded(spark, schema, value, reason):
    rows, reasons = _one(schema, value)
    assert rows == [] and len(reasons) == 1 and reasons[0].startswith(reason), reasons


def test_decimals_that_fit_exactly_are_kept_trailing_zeros_included(spark):
    result = parse_values("a DECIMAL(10,2)", ['{"a":12.50}', '{"a":-0.1}', '{"a":7}', '{"a":"3.25"}', '{"a":12.500}'])
    assert [r["a"] for r in result.rows] == [Decimal("12.50"), Decimal("-0.10"), Decimal("7.00"), Decimal("3.25"),
                                             Decimal("12.50")]
    assert result.reasons == []


# ----------------------------------------------------------------------------- timestamps
def test_an_epoch_number_without_a_declared_unit_is_quarantined(spark):
    rows, reasons = _one("time TIMESTAMP, id INT", '{"time":1767592800000,"id":1}')
    assert rows == [] and reasons[0].startswith("field 'time' expected an ISO-8601 date-time")
    assert "1767592800000" in reasons[0] and "timestamp_units" in reasons[0]


def test_an_epoch_number_with_a_declared_unit_is_that_instant(spark):
    rules = ValueRules({"time": "ms"})
    rows, reasons = _one("time TIMESTAMP, id INT", '{"time":1767592800000,"id":1}', rules)
    assert reasons == [] and rows[0]["time"].astimezone(UTC) == dt.datetime(2026, 1, 5, 6, tzinfo=UTC)
    seconds = parse_values("time TIMESTAMP", ['{"time":1767592800}', '{"time":"2026-01-05T07:00:00+01:00"}'],
                           rules=ValueRules({"time": "s"}))
    assert [r["time"].astimezone(UTC) for r in seconds.rows] == [dt.datetime(2026, 1, 5, 6, tzinfo=UTC)] * 2
    # in ms, 1767592800000000 is year 57982: outside the plausible years, quarantined
    rows, reasons = _one("time TIMESTAMP", '{"time":1767592800000000}', rules)
    assert rows == [] and reasons[0].startswith("field 'time' is outside the years 1900..9999")


REFUSED_TIMES = ['"202601"', '"2026"', '"yesterday"', '"2026-01-05T06:00:00.1234567Z"', "true",
                 '"+57982-10-15T00:00:00Z"', '"1899-12-31T23:59:59Z"', '{"t":1}']


def test_a_timestamp_that_is_not_iso_8601_in_range_is_quarantined(spark):
    result = parse_values("period TIMESTAMP", ['{"period":%s}' % v for v in REFUSED_TIMES])
    assert result.rows == [] and len(result.reasons) == len(REFUSED_TIMES)
    assert all(r.startswith("field 'period' ") for r in result.reasons), result.reasons


ACCEPTED_TIMES = [
    ("2026-01-05T06:00:00Z", dt.datetime(2026, 1, 5, 6)),
    ("2026-01-05T06:00:00.123456Z", dt.datetime(2026, 1, 5, 6, 0, 0, 123456)),
    ("2026-01-05T06:00:00.123456000Z", dt.datetime(2026, 1, 5, 6, 0, 0, 123456)),
    ("2026-01-05 06:00", dt.datetime(2026, 1, 5, 6)),
    ("2026-01-05T08:00:00+02:00", dt.datetime(2026, 1, 5, 6)),
    ("2026-01-05", dt.datetime(2026, 1, 5)),
    ("9999-12-31T23:59:59Z", dt.datetime(9999, 12, 31, 23, 59, 59)),
]


def test_iso_8601_timestamps_are_accepted(spark):
    result = parse_values("time TIMESTAMP", ['{"time":"%s"}' % text for text, _ in ACCEPTED_TIMES])
    assert result.reasons == []
    assert [r["time"].astimezone(UTC) for r in result.rows] == [e.replace(tzinfo=UTC) for _, e in ACCEPTED_TIMES]


def test_dates_follow_the_same_rule(spark):
    result = parse_values("day DATE", ['{"day":"2026-01-05"}', '{"day":"202601"}', '{"day":20260105}'])
    assert [r["day"] for r in result.rows] == [dt.date(2026, 1, 5)]
    assert [r.split(",")[0] for r in result.reasons] == ["field 'day' expected an ISO-8601 date (YYYY-MM-DD)"] * 2


# ----------------------------------------------------------------------------- nested values
@pytest.mark.parametrize("schema, value, reason", [
    ("loc STRUCT<lat: DOUBLE, lon: DOUBLE>", '{"loc":{"lat":"north","lon":2.5}}',
     "field 'loc.lat' expected double, got \"north\""),
    ("loc STRUCT<inner: STRUCT<n: INT>>", '{"loc":{"inner":{"n":"x"}}}', "field 'loc.inner.n' expected int, got \"x\""),
    ("xs ARRAY<INT>", '{"xs":[1,"a"]}', "field 'xs' expected array<int>, got [1,\"a\"]"),
    ("m MAP<STRING, INT>", '{"m":{"k":"v"}}', "field 'm' expected map<string,int>, got {\"k\":\"v\"}"),
    ("loc STRUCT<lat: DOUBLE>", '{"loc":5}', "field 'loc' expected struct<lat:double>, got 5"),
    ("events ARRAY<STRUCT<at: TIMESTAMP>>", '{"events":[{"at":"2026-01-05T06:00:00Z"},{"at":"202601"}]}',
     "field 'events[].at' expected an ISO-8601 date-time"),
    ("loc STRUCT<lat: DOUBLE NOT NULL>", '{"loc":{"lon":1}}', "missing required field 'loc.lat'"),
    # an element of an array or map of structs, arrays or maps parses as a struct with a null field, not a null
    ("e ARRAY<STRUCT<v: INT>>", '{"e":[{"v":"x"}]}', "field 'e' expected array<struct<v:int>>, got [{\"v\":\"x\"}]"),
    ("e ARRAY<STRUCT<v: INT>>", '{"e":[{"v":1},{"v":1.5}]}', "field 'e' expected array<struct<v:int>>, got "),
    ("e ARRAY<STRUCT<at: TIMESTAMP, v: INT>>", '{"e":[{"at":"2026-01-05T06:00:00Z","v":"x"}]}',
     "field 'e' expected array<struct<at:timestamp,v:int>>, got "),
    ("e ARRAY<STRUCT<in: STRUCT<n: INT>>>", '{"e":[{"in":{"n":"x"}}]}',
     "field 'e' expected array<struct<in:struct<n:int>>>"),
    ("xss ARRAY<ARRAY<INT>>", '{"xss":[[1],[2,"a"]]}', "field 'xss' expected array<array<int>>, got [[1],[2,\"a\"]]"),
    ("m MAP<STRING, STRUCT<v: INT>>", '{"m":{"k":{"v":"x"}}}', "field 'm' expected map<string,struct<v:int>>, got "),
    ("e ARRAY<STRUCT<v: INT NOT NULL>>", '{"e":[{"v":1},{"w":1}]}',
     "an element of field 'e' lacks a required (NOT NULL) field"),
    ("m MAP<STRING, STRUCT<v: INT NOT NULL>>", '{"m":{"a":{"v":null}}}',
     "an element of field 'm' lacks a required (NOT NULL) field"),
    ("loc STRUCT<e: ARRAY<STRUCT<v: INT NOT NULL>>>", '{"loc":{"e":[{}]}}',
     "an element of field 'loc.e' lacks a required (NOT NULL) field"),
    ("loc STRUCT<e: ARRAY<STRUCT<v: INT>>>", '{"loc":{"e":[{"v":"x"}]}}',
     "field 'loc.e' expected array<struct<v:int>>"),
])
def test_a_wrong_type_at_any_depth_is_quarantined_with_its_path(spark, schema, value, reason):
    rows, reasons = _one(schema, value)
    assert rows == [] and len(reasons) == 1 and reasons[0].startswith(reason), reasons


def test_arrays_and_maps_of_structs_that_fit_are_kept_with_their_nulls(spark):
    rows, reasons = _one("e ARRAY<STRUCT<v: INT, at: TIMESTAMP>>, m MAP<STRING, STRUCT<v: INT>>, xss ARRAY<ARRAY<INT>>",
                         '{"e":[{"v":1,"at":"2026-01-05T06:00:00Z"},{"v":null},null,{}],'
                         '"m":{"a":{"v":2},"b":null,"c":{"v":null}},"xss":[[1,null],null,[]]}')
    assert reasons == []
    assert [None if x is None else x["v"] for x in rows[0]["e"]] == [1, None, None, None]
    assert {k: None if v is None else v["v"] for k, v in rows[0]["m"].items()} == {"a": 2, "b": None, "c": None}
    assert rows[0]["xss"] == [[1, None], None, []]


def test_an_array_of_structs_with_a_required_field_keeps_its_null_elements(spark):
    rows, reasons = _one("e ARRAY<STRUCT<v: INT NOT NULL>>", '{"e":[{"v":1},null]}')
    assert reasons == [] and [None if x is None else x["v"] for x in rows[0]["e"]] == [1, None]


def test_nested_values_that_fit_are_kept(spark):
    rows, reasons = _one("loc STRUCT<lat: DOUBLE, lon: DOUBLE>, xs ARRAY<INT>, at ARRAY<TIMESTAMP>",
                         '{"loc":{"lat":48.1,"lon":2.5},"xs":[1,null],"at":["2026-01-05T06:00:00Z"]}')
    assert reasons == []
    assert (rows[0]["loc"], rows[0]["xs"]) == ({"lat": 48.1, "lon": 2.5}, [1, None])
    assert rows[0]["at"][0].astimezone(UTC) == dt.datetime(2026, 1, 5, 6, tzinfo=UTC)


# ----------------------------------------------------------------------------- one JSON object, strictly
STRICT = [
    ('{"id":3,"val":1.0} {"id":4,"val":2.0}', "more than one JSON value (only whitespace may follow the object)"),
    ('{"id":3,"val":1.0},{"id":4,"val":2.0}', "more than one JSON value (only whitespace may follow the object)"),
    ('{"id":3,"val":1.0} x', "more than one JSON value (only whitespace may follow the object)"),
    ('{"id":3}] [{"id":4}', "more than one JSON value (only whitespace may follow the object)"),
    ('{"id":3}],[{"id":4}', "more than one JSON value (only whitespace may follow the object)"),
    ('{"id":3} "]"', "more than one JSON value (only whitespace may follow the object)"),
    ("{'id':3}", "not valid JSON"),
    ('{id:3}', "not valid JSON"),
    ('{"id":3,"val":NaN}', "not valid JSON"),
    ('{"id":03}', "not valid JSON"),
    ('{"id":3,"s":"\\q"}', "not valid JSON"),
    ('{"id":3} // note', "more than one JSON value (only whitespace may follow the object)"),
    ('[{"id":3}]', "not a JSON object (got an array)"),
]


def test_anything_but_one_strict_json_object_is_quarantined(spark):
    result = parse_values("id INT, val DOUBLE, s STRING", [v for v, _ in STRICT])
    assert result.rows == []
    assert result.reasons == [r for _, r in STRICT]


def test_a_value_with_a_closing_bracket_is_read_like_any_other(spark):
    # values with a "]" take the hashed sentinel path of the one-value check, the others the plain one
    rows, reasons = _one("id INT, s STRING, xs ARRAY<INT>", '{"id":3,"s":"a]b","xs":[1,2]} ')
    assert reasons == [] and (rows[0]["id"], rows[0]["s"], rows[0]["xs"]) == (3, "a]b", [1, 2])


def test_whitespace_around_the_object_is_fine(spark):
    rows, reasons = _one("id INT, val DOUBLE", ' \t{"id":3,"val":1.0}\r\n ')
    assert reasons == [] and (rows[0]["id"], rows[0]["val"]) == (3, 1.0)


def test_not_null_fields_stay_required_in_the_valid_rows(spark):
    from framework.consumer.parsing import split_valid_invalid
    from framework.testing.consumer import kafka_like_frame
    from framework.consumer.parsing import kafka_frame

    frame = kafka_frame(kafka_like_frame(spark, ['{"id":1,"time":"2026-01-05T06:00:00Z","loc":{"lat":1.0}}']))
    valid, _ = split_valid_invalid(frame, "id INT NOT NULL, time TIMESTAMP NOT NULL, amount DECIMAL(10,2) NOT NULL, "
                                          "loc STRUCT<lat: DOUBLE NOT NULL>, val DOUBLE")
    nullable = {f.name: f.nullable for f in valid.schema.fields}
    assert (nullable["id"], nullable["time"], nullable["amount"], nullable["val"]) == (False, False, False, True)
    assert valid.schema["loc"].dataType["lat"].nullable is False


@pytest.mark.parametrize("planned", [1, None])  # collected to the driver, or written by Spark and merged
def test_not_null_fields_are_required_in_the_parquet_files(spark, tmp_path, planned):
    import json

    import pyarrow.parquet as pq

    from framework.consumer.parsing import kafka_frame, split_valid_invalid
    from framework.sinks import BatchPublisher
    from framework.testing.consumer import kafka_like_frame

    frame = kafka_frame(kafka_like_frame(spark, ['{"id":1,"time":"2026-01-05T06:00:00Z","val":1.5}']))
    valid, _ = split_valid_invalid(frame, "id INT NOT NULL, time TIMESTAMP NOT NULL, val DOUBLE")
    path = BatchPublisher(tmp_path / "t", collect_below=10).publish(valid, 0, planned)
    schema = pq.read_schema(path)
    assert (schema.field("id").nullable, schema.field("time").nullable, schema.field("val").nullable) == \
        (False, False, True)
    stored = json.loads(schema.metadata[b"org.apache.spark.sql.parquet.row.metadata"])
    assert {f["name"]: f["nullable"] for f in stored["fields"]}["id"] is False
    assert pq.read_table(path).column("id").to_pylist() == [1]


@pytest.mark.parametrize("planned", [1, None])  # small enough to collect, or written by Spark in parts and merged
def test_a_required_field_inside_an_absent_struct_is_written_and_stays_required(spark, tmp_path, planned):
    """``loc`` may be absent; when it is there, ``loc.lat`` must be (Arrow cannot collect such a column)."""
    import pyarrow.parquet as pq

    from framework.consumer.parsing import kafka_frame, split_valid_invalid
    from framework.sinks import BatchPublisher
    from framework.testing.consumer import kafka_like_frame

    values = ['{"id":1}', '{"id":2,"loc":{"lat":1.5}}', '{"id":3,"loc":null}', '{"id":4,"loc":{"lon":2.0}}'] * 2
    frame = kafka_frame(kafka_like_frame(spark, values))
    valid, bad = split_valid_invalid(frame, "id INT NOT NULL, loc STRUCT<lat: DOUBLE NOT NULL, lon: DOUBLE>")
    path = BatchPublisher(tmp_path / "t", collect_below=100).publish(
        valid if planned else valid.repartition(3), 0, planned)

    rows = sorted(pq.read_table(path, columns=["id", "loc"]).to_pylist(), key=lambda r: r["id"])
    assert rows == sorted([{"id": 1, "loc": None}, {"id": 2, "loc": {"lat": 1.5, "lon": None}},
                           {"id": 3, "loc": None}] * 2, key=lambda r: r["id"])
    assert [r.reason for r in bad.select("reason").collect()] == ["missing required field 'loc.lat'"] * 2
    assert pq.read_schema(path).field("loc").type.field("lat").nullable is False
