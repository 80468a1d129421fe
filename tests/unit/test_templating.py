"""The template syntax: references, values as text, deferral, escapes, errors."""

from __future__ import annotations

import pytest

from helios.templating import (
    ESCAPE,
    TemplateError,
    check,
    has_template,
    references,
    render,
    to_text,
)

VALUES = {
    "params": {"model": "als", "epochs": 5, "rate": 0.25, "debug": True, "off": False,
               "models": ["als", "bpr"], "cfg": {"b": 1, "a": [1, 2]}, "none": None},
    "run": {"id": "0123456789abcdef0123456789abcdef", "logicalTime": "2026-12-01T00:00:00Z"},
}


@pytest.mark.parametrize("text,expected", [
    ("{{ params.model }}", "als"),  # a whole argv element
    ("{{params.model}}", "als"),  # spaces optional
    ("{{   params.model\t}}", "als"),
    ("--model={{ params.model }}", "--model=als"),  # inside a string
    ("{{ params.model }}-{{ params.epochs }}", "als-5"),
    ("run {{ run.id }} at {{ run.logicalTime }}",
     "run 0123456789abcdef0123456789abcdef at 2026-12-01T00:00:00Z"),
    ("no braces at all", "no braces at all"),
    ("a } and }} and { alone", "a } and }} and { alone"),
    ("{{ params.models.1 }}", "bpr"),  # a digit segment indexes a list
    ("{{ params.cfg.a }}", "[1,2]"),
])
def test_render(text: str, expected: str) -> None:
    assert render(text, VALUES) == expected


@pytest.mark.parametrize("name,expected", [
    ("epochs", "5"), ("rate", "0.25"), ("debug", "true"), ("off", "false"),
    ("models", '["als","bpr"]'), ("cfg", '{"a":[1,2],"b":1}'), ("none", "null"),
])
def test_types_render_deterministically(name: str, expected: str) -> None:
    assert render(f"{{{{ params.{name} }}}}", VALUES) == expected


def test_to_text_edge_values() -> None:
    assert to_text(10**20) == "100000000000000000000"
    assert to_text(1e100) == "1e+100"
    assert to_text("é{{") == "é{{"  # a value is never rendered again
    with pytest.raises(TemplateError):
        to_text(float("nan"))


def test_escape_gives_literal_braces() -> None:
    assert render('{{ "{{" }} not a ref }}', VALUES) == "{{ not a ref }}"
    assert render("{{'{{'}}x", VALUES) == "{{x"
    assert render(ESCAPE, VALUES) == "{{"
    assert references('{{ "{{" }} {{ params.model }}')[0].dotted == "params.model"


def test_deferred_references_stay_for_a_later_render() -> None:
    text = '{{ params.model }}/{{ item }}/{{ item.name }}/{{run.status}}/{{ "{{" }}'
    once = render(text, VALUES, defer=("item", "run.status"))
    # Deferred references and escapes are kept verbatim: the result is still a template.
    assert once == 'als/{{ item }}/{{ item.name }}/{{run.status}}/{{ "{{" }}'
    final = render(once, {"item": {"name": "x"}, "run": {"status": "FAILED"}} | {
        "params": {}}, defer=())
    assert final == 'als/{"name":"x"}/x/FAILED/{{'


def test_partial_render_escapes_braces_in_values() -> None:
    values = {"params": {"s": "x{{ run.id }}{{"}}
    once = render("{{ params.s }} {{ '{{' }}", values, partial=True)
    assert once == 'x{{ "{{" }} run.id }}{{ "{{" }} {{ \'{{\' }}'
    assert render(once, {}) == "x{{ run.id }}{{ {{"  # the value exactly, then the literal


@pytest.mark.parametrize("value", ["a{", "{", "{{{", "x{{", "}{", "{a}{"])
@pytest.mark.parametrize("after", ["{{ item }}", "{abc", "{{ '{{' }}", "", "{{ \"{\" }}{{ item }}"])
def test_a_value_ending_in_a_brace_never_runs_into_what_follows(value: str, after: str) -> None:
    once = render("{{ params.v }}" + after, {"params": {"v": value}}, defer=("item",))
    final = render(once, {"item": "I"})
    expected_after = render(after, {"item": "I"})
    assert final == value + expected_after


def test_a_literal_brace_before_a_reference_is_the_brace_escape() -> None:
    assert render('{{ "{" }}{{ params.model }}}', VALUES) == "{als}"
    assert render("{{'{'}}", VALUES) == "{"
    with pytest.raises(TemplateError):
        render("{{{ params.model }}", VALUES)


def test_defer_matches_whole_segments() -> None:
    # `items` is not under `item`; `run.statusCode` is not `run.status`.
    with pytest.raises(TemplateError, match="unknown reference 'items'"):
        render("{{ items }}", VALUES, defer=("item",))
    with pytest.raises(TemplateError, match=r"run\.statusCode"):
        render("{{ run.statusCode }}", VALUES, defer=("run.status",))


@pytest.mark.parametrize("text,message", [
    ("{{ params.missing }}", "unknown reference 'params.missing' (known: params.cfg"),
    ("{{ param.model }}", "unknown reference 'param.model'"),
    ("{{ run.nope }}", "unknown reference 'run.nope' (known: run.id, run.logicalTime)"),
    ("{{ params.models.7 }}", "unknown reference 'params.models.7'"),
])
def test_unknown_reference_is_named(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(text, VALUES)
    assert message in str(info.value)


@pytest.mark.parametrize("text", [
    "{{7*7}}", "{{ params.model", "{{ }}", "{{ params..x }}", "{{ params.x | upper }}",
    "{{ __import__('os') }}", "{{ .Id }}", "x {{{ params.model }}}", "{{ 'a' }}",
    "{{ params.model }} {{", "{{\nparams.model\n}}",
])
def test_malformed_expressions_are_errors_never_evaluated(text: str) -> None:
    with pytest.raises(TemplateError, match="malformed template expression"):
        render(text, VALUES)
    assert check(text, ["params.model"])  # reported, not raised, by check()


def test_check_against_known_paths() -> None:
    known = ["params.model", "params.cfg", "run.id", "run.logicalTime"]
    assert check("{{ params.model }} {{ run.id }} {{ params.cfg.a }}", known) == []
    assert check("{{ item.x }} {{ run.status }}", known, defer=("item", "run.status")) == []
    problems = check("{{ params.modle }}", known)
    assert problems == ["unknown reference 'params.modle' (known: params.cfg, params.model)"]


def test_references_positions_and_has_template() -> None:
    text = "a {{ params.x }} b {{run.id}}"
    refs = references(text)
    assert [r.path for r in refs] == [("params", "x"), ("run", "id")]
    assert [text[r.start:r.end] for r in refs] == ["{{ params.x }}", "{{run.id}}"]
    assert has_template(text) and not has_template("{ {")


def test_many_references_are_bounded() -> None:
    text = "{{ run.id }}" * 10_001
    with pytest.raises(TemplateError, match="more than 10000"):
        render(text, VALUES)
