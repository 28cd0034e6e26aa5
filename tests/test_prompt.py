"""Templates: parsing, column checks, rendering, callable results. Pure, no I/O."""

import pytest

from valar_pandas import ConfigError
from valar_pandas._core.prompt import Row, check_messages, compile_template

COLUMNS = ["review", "stars", "unit price", "a.b", 0]


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("Review: {review}", {"review": "Great"}, "Review: Great"),
        ("{review} ({stars} stars)", {"review": "ok", "stars": 3}, "ok (3 stars)"),
        ("{{literal}} {review}", {"review": "x"}, "{literal} x"),
        ("Price {unit price:.2f}", {"unit price": 3.14159}, "Price 3.14"),
        ("{a.b}!", {"a.b": "dotted"}, "dotted!"),
        ("{0}", {0: "int label"}, "int label"),
        ("{review!r}", {"review": "q"}, "'q'"),
        ("{review}{review}", {"review": "ab"}, "abab"),
    ],
    ids=["plain", "two", "braces", "spec", "dotted-name", "int-column", "conversion", "repeat"],
)
def test_render(template, values, expected):
    assert compile_template(template, COLUMNS).render(values) == expected


def test_columns_in_first_use_order_without_repeats():
    t = compile_template("{stars} {review} {stars}", COLUMNS)
    assert t.columns == ("stars", "review")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Review: {reveiw}", "'reveiw' (did you mean 'review'?)"),
        ("{Stars}", "did you mean 'stars'"),
        ("{nothing_like_it}", "Available columns: 'review'"),
        ("open { brace", "bad template"),
        ("close } brace", "bad template"),
        ("{}", "empty placeholder"),
        ("no placeholders", "names no column"),
        ("{review:{stars}}", "nested placeholder"),
    ],
    ids=["typo", "case", "unknown", "open", "close", "empty", "none", "nested"],
)
def test_bad_templates_raise_config_error(template, message):
    with pytest.raises(ConfigError, match=None) as info:
        compile_template(template, COLUMNS)
    assert message in str(info.value)


def test_template_of_wrong_type():
    with pytest.raises(ConfigError, match="string or a callable"):
        compile_template(42, COLUMNS)  # type: ignore[arg-type]


def test_callable_template_is_kept():
    t = compile_template(lambda row: row.review, COLUMNS)
    assert t.func is not None and t.columns == ()


def test_row_allows_attribute_and_item_access():
    row = Row({"review": "x", 3: "int"})
    assert row.review == "x" and row["review"] == "x" and row[3] == "int"
    with pytest.raises(AttributeError):
        _ = row.missing


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "non-empty list"),
        (42, "returned int"),
        ([{"role": "user"}], "'role' and 'content'"),
        ([{"role": "robot", "content": "x"}], "role 'robot'"),
        ([{"role": "user", "content": 3}], "string or list content"),
    ],
    ids=["empty", "int", "no-content", "bad-role", "bad-content"],
)
def test_check_messages_rejects(value, message):
    with pytest.raises(ConfigError) as info:
        check_messages(value, "row 0")
    assert message in str(info.value)


def test_check_messages_accepts_and_copies():
    given = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    messages = check_messages(given, "row 0")
    assert messages == given and messages[0] is not given[0]


def test_missing_values_render_empty_whatever_the_spec():
    from valar_pandas._core.prompt import MISSING

    t = compile_template("[{unit price:.2f}][{review!r}]", COLUMNS)
    assert t.render({"unit price": MISSING, "review": MISSING}) == "[][]"


def test_a_value_the_spec_cannot_format_is_a_config_error():
    t = compile_template("{unit price:.2f}", COLUMNS)
    with pytest.raises(ConfigError, match="cannot format 'cheap' from column 'unit price'"):
        t.render({"unit price": "cheap"})


def test_unknown_conversion_is_rejected():
    with pytest.raises(ConfigError, match="unknown conversion '!x'"):
        compile_template("{review!x}", COLUMNS)


def test_only_placeholders_with_a_format_spec_can_fail():
    template = compile_template("{a} {b:>4} {a!r} {c:05d} {b:>4}", ["a", "b", "c"])
    fallible = template.fallible()
    assert fallible is not None and fallible.columns == ("b", "c")
    assert fallible.render({"b": "x", "c": 7}) == "   x00007   x"
    assert compile_template("{a!r} {b}", ["a", "b"]).fallible() is None
    assert compile_template(lambda row: "x", ["a"]).fallible() is None
    with pytest.raises(ConfigError, match="cannot format 1114112"):
        compile_template("{c:c}", ["c"]).render({"c": 0x110000})
