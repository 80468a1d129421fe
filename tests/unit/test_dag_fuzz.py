"""Property tests of the DAG parser: any bytes in, a `Dag` or a precise `DagError` out.

The API turns every `DagError` into a 400 (its errors serialised with orjson), so the
parser must never raise anything else, every error must say what is wrong, and what it
says must stay small whatever the document's size. A document that parses must survive
`to_document()` unchanged, as JSON and as YAML: the stored definition is that document.
"""

from __future__ import annotations

import codecs
import copy
import json
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from helios.dag import Dag, DagError, parse_dag, parse_dag_document
from helios.dag.model import FILE_NAME, MAX_RETRIES, MAX_TIMEOUT_SECONDS

# What an error report may weigh, whatever the document (up to 1 MiB) holds: one error's
# field path and reason, all of them together, and the exception's text (the `detail`).
MAX_REASON = 1024
MAX_FIELD = 1024
MAX_TOTAL = 128 * 1024
MAX_DETAIL = 32 * 1024

# Fixed seed, no example database in the work tree, no "explain" phase (it traces every
# line and takes minutes on a failure); a failure still shrinks to a minimal input.
FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

JSON = "application/json"
YAML = "application/yaml"
CONTENT_TYPES = [JSON, YAML, "application/x-yaml", "text/yaml", "text/x-yaml", "",
                 "application/json; charset=utf-16", "APPLICATION/YAML; charset=latin-1",
                 "text/plain", "multipart/form-data; boundary=x", ";;;", "\x00"]


def check(body: bytes, content_type: str) -> Dag | DagError:
    """The parser's contract on one input; returns what it gave for further checks."""
    try:
        return parse_dag_document(body, content_type)
    except DagError as exc:
        error = exc  # checked outside the handler: a failure must not print a 1 MB traceback
    # Anything else propagates and fails the test with the input hypothesis found.
    check_error(error)
    return error


def check_error(exc: DagError) -> None:
    assert exc.title and isinstance(exc.title, str)
    assert exc.errors, f"{exc.title!r} with no errors"
    for err in exc.errors:
        assert isinstance(err.loc, str) and isinstance(err.msg, str)
        assert err.msg.strip(), f"empty reason at {err.loc[:80]!r}"
        reason, field = len(err.msg), len(err.loc)
        assert reason <= MAX_REASON, f"a reason of {reason} chars at {err.loc[:80]!r}"
        assert field <= MAX_FIELD, f"a field path of {field} chars: {err.loc[:80]!r}..."
    total = sum(len(e.loc) + len(e.msg) for e in exc.errors)
    assert total <= MAX_TOTAL, f"{len(exc.errors)} errors, {total} chars in all"
    detail = len(str(exc))
    assert detail <= MAX_DETAIL, f"a detail of {detail} chars"
    # What problems.py sends: orjson refuses lone surrogates, and that would be a 500.
    orjson.dumps({"detail": str(exc), "errors": [e.as_dict() for e in exc.errors]})


# --------------------------------------------------------------------------- valid DAGs

def base_doc() -> dict[str, Any]:
    """Every optional field set, so a mutation can reach each of them."""
    return {
        "apiVersion": "v1",
        "dagName": "fuzz",
        "useCache": True,
        "tasks": [
            {"name": "gen", "image": "ubuntu:latest", "command": ["/bin/sh", "-c", "echo x"],
             "args": ["--flag"], "env": {"MODE": "fast"}, "outputs": ["out.txt", "b.bin"],
             "retries": 2, "timeoutSeconds": 60, "cache": True, "memoize": False,
             "cacheVersion": "1",
             "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                           "limits": {"cpu": "1", "memory": "1Gi"}},
             "nodeSelector": {"disk": "ssd"},
             "tolerations": [{"key": "k", "operator": "Equal", "value": "v",
                              "effect": "NoSchedule", "tolerationSeconds": 5}],
             "serviceAccountName": "runner", "imagePullSecrets": ["regcred"],
             "envFromSecrets": ["creds"]},
            {"name": "use", "image": "busybox", "command": ["cat"], "depends_on": ["gen"],
             "inputs": [{"fromTask": "gen", "name": "in.txt", "artifact": "out.txt"}]},
        ],
    }


def test_base_document_is_valid() -> None:
    assert parse_dag(base_doc()).task("use").dependencies == ["gen"]


# --------------------------------------------------------------------------- hostile values

LONG = 100_000
SPECIAL_STRINGS = [
    "", " ", "\t\n", "\x00", "a\x00b", ".", "..", "../../etc/passwd", "a/b", "a\\b", "-rf",
    "--privileged", "x" * 64, "x" * 256, "x" * LONG, "é" * 1000, "\u202etxt.exe", "\ufeffa",
    "\ud800", "a\udfffb", "\U0010ffff", "\x85", "\u2028", "$(id)", "`id`", "; rm -rf /", "|| true",
    "HELIOS_CACHE_DIR", "LD_PRELOAD", "1BAD", "v1", "V1", "v2", "true", "null", "~", "0x10",
    "1e309", "NaN", "-1", "1Gi", "100mm", "999999999999999999999999Gi", "ubuntu latest",
    "%s%n", "{{7*7}}", "<script>", "\r\n\r\nX-Injected: 1",
]
SPECIAL_NUMBERS = [0, -1, 1, 20, 21, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**100,
                   MAX_TIMEOUT_SECONDS + 1, 0.5, -0.0, 1e308, float("inf"), float("-inf"),
                   float("nan"), True, False]


def nested(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


text = st.text(max_size=40) | st.text(
    st.characters(categories=["Cs", "Cc", "Zs", "Mn"]), max_size=10)
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | text
           | st.sampled_from(SPECIAL_STRINGS) | st.sampled_from(SPECIAL_NUMBERS))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=30,
)
hostile = (json_values
           | st.builds(nested, st.integers(50, 400), scalars, st.sampled_from(["list", "dict"]))
           | st.lists(st.sampled_from(SPECIAL_STRINGS), min_size=1, max_size=5)
           | st.dictionaries(st.sampled_from(SPECIAL_STRINGS), scalars, min_size=1, max_size=4))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += paths(child, (*prefix, i))
    return out


def mutate(doc: dict[str, Any], path: tuple[Any, ...], op: str, value: Any, key: str) -> Any:
    """Apply one mutation at `path`; returns the new document (maybe not a mapping)."""
    if not path:
        return value if op == "replace" else doc
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "add-key" and isinstance(parent[last], dict):
        parent[last][key] = value
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    elif op == "add-key" and isinstance(parent[last], list):
        parent[last].append(value)
    return doc


def to_yaml(value: Any, *, allow_unicode: bool = True) -> str:
    try:
        return yaml.safe_dump(value, allow_unicode=allow_unicode, sort_keys=False)
    except (yaml.YAMLError, RecursionError, ValueError):
        return json.dumps(value)  # a JSON text is (nearly) a YAML document too


def encode(value: Any, fmt: str) -> bytes:
    if fmt == "json":
        return json.dumps(value).encode()
    if fmt == "json-raw":  # lone surrogates written as themselves, not as \\u escapes
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return to_yaml(value).encode("utf-8", "surrogatepass")


BYTE_MUTATIONS = ["none", "utf8-bom", "utf16", "utf32", "bom-then-latin1", "nul", "invalid-utf8",
                  "truncate", "overlong", "flip"]


def mutate_bytes(body: bytes, how: str, where: int) -> bytes:
    at = where % (len(body) + 1)
    if how == "utf8-bom":
        return codecs.BOM_UTF8 + body
    if how == "utf16":
        return body.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
    if how == "utf32":
        return body.decode("utf-8", "surrogatepass").encode("utf-32", "surrogatepass")
    if how == "bom-then-latin1":
        return codecs.BOM_UTF8 + body.decode("utf-8", "replace").encode("latin-1", "replace")
    if how == "nul":
        return body[:at] + b"\x00" + body[at:]
    if how == "invalid-utf8":
        return body[:at] + b"\xff\xfe\xc3(" + body[at:]
    if how == "overlong":  # an over-long '/' and an encoded surrogate
        return body[:at] + b"\xc0\xaf\xed\xa0\x80" + body[at:]
    if how == "truncate":
        return body[:at]
    if how == "flip" and body:
        i = at % len(body)
        return body[:i] + bytes([body[i] ^ 0x80]) + body[i + 1 :]
    return body


@settings(FUZZ, max_examples=300)
@given(st.data())
def test_mutated_documents_parse_or_fail_precisely(data: st.DataObject) -> None:
    doc = base_doc()
    path = data.draw(st.sampled_from(paths(doc)), label="path")
    op = data.draw(st.sampled_from(["replace", "replace", "delete", "add-key", "duplicate"]))
    value = data.draw(hostile, label="value")
    key = data.draw(text | st.sampled_from(SPECIAL_STRINGS), label="key")
    doc = mutate(doc, path, op, value, key)
    fmt = data.draw(st.sampled_from(["json", "json-raw", "yaml"]), label="format")
    body = mutate_bytes(encode(doc, fmt), data.draw(st.sampled_from(BYTE_MUTATIONS)),
                        data.draw(st.integers(0, 10**6)))
    ctype = JSON if fmt.startswith("json") else YAML
    check(body, data.draw(st.sampled_from([ctype, ctype, *CONTENT_TYPES]), label="ctype"))


@FUZZ
@given(json_values, st.sampled_from(["json", "json-raw", "yaml"]), st.sampled_from(CONTENT_TYPES))
def test_random_values_parse_or_fail_precisely(value: Any, fmt: str, ctype: str) -> None:
    check(encode(value, fmt), ctype)
    try:
        parse_dag(value)
    except DagError as exc:
        error = exc
    else:
        return
    check_error(error)


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(CONTENT_TYPES))
def test_random_bytes_parse_or_fail_precisely(body: bytes, ctype: str) -> None:
    check(body, ctype)


YAML_LINES = [
    "apiVersion: v1", "dagName: fuzz", "dagName: other", "tasks:", "- name: a", "  image: i",
    "  command: [x]", "  command: !!python/object/apply:os.system ['id']", "tasks: &t [1]",
    "more: *t", "<<: *t", "<<: {useCache: false}", "%YAML 1.1", "%TAG ! tag:evil.com,2000:",
    "---", "...", "? [a, b]", ": c", "  env: !!set {A, B}", "  env: !!omap [{A: b}]",
    "  image: !!binary aGVsbG8=", "  image: !!binary /w==", "  retries: !!float 1",
    "  retries: 0o17", "  retries: 1_000", "  retries: 2001-12-14", "  command: !!str [x]",
    "  command: !custom [x]", "  name: !!python/name:os.system", "  cache: yes",
    "  cache: on", "  timeoutSeconds: .inf", "  timeoutSeconds: .nan", "!!python/module:os",
    "  command: [\"\\ud800\"]", "  command: ['\\x00']", "  command: [\"\\0\"]",
    "  outputs: [\"a\\x2fb\"]", "\t- tab", "  - [[[[[[[[[[", "key: 'unterminated", "&a a: &b b",
    "* : x", "{a: 1, a: 2}", "useCache: !!bool maybe", "tasks: !!map {}",
]


@FUZZ
@given(st.lists(st.sampled_from(YAML_LINES), min_size=1, max_size=12),
       st.sampled_from(BYTE_MUTATIONS), st.integers(0, 10**6))
def test_hostile_yaml_parses_or_fails_precisely(lines: list[str], how: str, where: int) -> None:
    body = "\n".join(lines).encode("utf-8", "surrogatepass")
    result = check(mutate_bytes(body, how, where), YAML)
    if isinstance(result, Dag):
        # Whatever YAML accepted must be a plain document: no tag smuggled an object in.
        assert parse_dag(orjson.loads(orjson.dumps(result.to_document()))) == result


# --------------------------------------------------------------------------- hand-picked

VALID_YAML = b"apiVersion: v1\ndagName: fuzz\ntasks:\n- name: a\n  image: i\n  command: [x]\n"


@pytest.mark.parametrize(("body", "ctype", "title"), [
    # Deep nesting is refused by a linear pre-scan, before any parser sees it.
    (b"[" * 100_000, JSON, "document too deeply nested"),
    (b"[" * 100_000, YAML, "document too deeply nested"),
    (b"{\"a\":" * 50_000, JSON, "document too deeply nested"),
    (b"[" * (1024 * 1024), YAML, "document too deeply nested"),
    # An apostrophe in a plain scalar fools the pre-scan; the composer's bound holds.
    (b"a: b'\nc: " + b"[" * 100_000 + b" '\n", YAML, "malformed YAML"),
    # Block nesting (indentation) is refused by the YAML composer's own depth bound.
    (b"a:\n" + b"".join(b" " * i + b"b:\n" for i in range(1, 1000)), YAML, "malformed YAML"),
    (b"retries: " + b"9" * 5000, YAML, "malformed YAML"),
    (b'{"retries": ' + b"9" * 5000 + b"}", JSON, "malformed JSON"),
    (b"a: &a [x]\nb: [*a, *a]\n", YAML, "malformed YAML"),  # aliases: billion laughs
    (b"!!python/object/apply:os.system ['touch /tmp/helios-pwned']", YAML, "malformed YAML"),
    (b"a: !!python/object/new:type [x, [], {}]", YAML, "malformed YAML"),
    (VALID_YAML + b"---\n" + VALID_YAML, YAML, "malformed YAML"),
    (b"\xff\xfe\xfd", YAML, "malformed YAML"),
    (b"\xff\xfe\xfd", JSON, "malformed JSON"),
    (b"", JSON, "malformed JSON"),
    (b"", YAML, "invalid DAG"),
    (b"null", JSON, "invalid DAG"),
    (b"\x00", YAML, "malformed YAML"),
    (VALID_YAML.replace(b"fuzz", b"f\x00z"), YAML, "malformed YAML"),
    (b"x" * (1024 * 1024 + 1), JSON, "document too large"),
])
def test_hostile_documents(body: bytes, ctype: str, title: str | None) -> None:
    result = check(body, ctype)
    assert isinstance(result, DagError)
    if title is not None:
        assert result.title == title, result


def test_yaml_tags_never_build_python_objects(tmp_path: Any) -> None:
    marker = tmp_path / "pwned"
    body = f"apiVersion: !!python/object/apply:os.system ['touch {marker}']\n".encode()
    assert isinstance(check(body, YAML), DagError)
    assert not marker.exists()


def test_byte_order_marks_and_utf16_are_accepted() -> None:
    doc = json.dumps(base_doc())
    want = parse_dag(base_doc())
    for body in (codecs.BOM_UTF8 + doc.encode(), doc.encode("utf-16"), doc.encode("utf-32")):
        assert parse_dag_document(body, JSON) == want
    assert parse_dag_document(codecs.BOM_UTF8 + doc.encode(), YAML) == want
    assert parse_dag_document(doc.encode("utf-16"), YAML) == want


def with_task(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "dagName": "fuzz",
            "tasks": [{"name": "a", "image": "i", "command": ["x"], **fields}]}


def chain(n: int, name_len: int) -> dict[str, Any]:
    names = [f"t{i}".ljust(name_len, "x") for i in range(n)]
    return {"apiVersion": "v1", "dagName": "fuzz", "tasks": [
        {"name": name, "image": "i", "command": ["x"], "depends_on": [names[(i + 1) % n]]}
        for i, name in enumerate(names)]}


# Each of these documents is under the 1 MiB limit; the answer must not grow with it.
@pytest.mark.parametrize("doc", [
    pytest.param({**with_task(), "k" * 500_000: 1}, id="long-unknown-key"),
    pytest.param(with_task(env={"1" + "A" * 500_000: "x"}), id="long-invalid-env-name"),
    pytest.param({**with_task(), **{f"{i:03d}".ljust(2000, "k"): 1 for i in range(400)}},
                 id="400-long-unknown-keys"),
    pytest.param(chain(1000, 63), id="cycle-of-1000-long-names"),
    pytest.param({"apiVersion": "v1", "dagName": "fuzz", "tasks": [
        {"name": "p", "image": "i", "command": ["x"],
         "outputs": [f"{i:04d}".ljust(250, "o") for i in range(1000)]},
        {"name": "c", "image": "i", "command": ["x"],
         "inputs": [{"fromTask": "p", "name": "in"}]}]}, id="input-of-task-with-1000-outputs"),
    pytest.param(with_task(depends_on=["u"] * 150_000), id="150000-unknown-dependencies"),
])
def test_error_reports_stay_small_for_big_documents(doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    assert len(body) <= 1024 * 1024
    assert isinstance(check(body, JSON), DagError)


def test_duplicate_keys_are_rejected_not_silently_dropped() -> None:
    """`command` given twice: the first is silently ignored today (last one wins)."""
    yaml_body = (b"apiVersion: v1\ndagName: fuzz\ntasks:\n- name: a\n  image: i\n"
                 b"  command: [rm, -rf, /data]\n  command: [echo, safe]\n")
    json_body = (b'{"apiVersion": "v1", "dagName": "fuzz", "tasks": [{"name": "a", "image": "i",'
                 b' "command": ["rm", "-rf", "/data"], "command": ["echo", "safe"]}]}')
    for body, ctype in ((yaml_body, YAML), (json_body, JSON)):
        result = check(body, ctype)
        assert isinstance(result, DagError), f"{ctype}: accepted {result.tasks[0].command}"
        assert any("command" in e.loc or "command" in e.msg for e in result.errors), result


# --------------------------------------------------------------------------- round trip

names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
safe_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                    max_size=30)
# Drawn from the pattern the OpenAPI document publishes: what it allows must be accepted.
file_names = st.from_regex(FILE_NAME, fullmatch=True).filter(lambda s: len(s) <= 20)
command_items = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                        min_size=1, max_size=30)
env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda s: not s.startswith("HELIOS_"))
quantities = st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,3})?(m|k|Ki|M|Mi|G|Gi|T|Ti)?", fullmatch=True)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    task_names = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    tasks: list[dict[str, Any]] = []
    for i, name in enumerate(task_names):
        command = draw(st.lists(command_items, min_size=1, max_size=4).filter(
            lambda c: c[0].strip(" \t\n\v\f\r")))
        task: dict[str, Any] = {"name": name, "image": draw(st.from_regex(r"[!-~]{1,40}",
                                                                          fullmatch=True)),
                                "command": command}
        optional: dict[str, Any] = {
            "args": st.lists(safe_text, max_size=3),
            "env": st.dictionaries(env_names, safe_text, max_size=3),
            "outputs": st.lists(file_names, max_size=3, unique=True),
            "retries": st.integers(0, MAX_RETRIES),
            "timeoutSeconds": st.none() | st.integers(1, MAX_TIMEOUT_SECONDS),
            "cache": st.booleans(),
            "memoize": st.booleans(),
            "cacheVersion": st.none() | safe_text,
            "resources": st.none() | st.fixed_dictionaries({}, optional={
                "requests": st.fixed_dictionaries({}, optional={"cpu": quantities,
                                                                "memory": quantities}),
                "limits": st.fixed_dictionaries({}, optional={"cpu": quantities}),
            }),
            "nodeSelector": st.dictionaries(safe_text, st.text(max_size=10).filter(
                lambda s: "\x00" not in s), max_size=2),
            "tolerations": st.lists(st.fixed_dictionaries({}, optional={
                "key": safe_text, "operator": st.sampled_from(["Exists", "Equal"]),
                "effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"]),
                "tolerationSeconds": st.integers(0, 10**6)}), max_size=2),
            "serviceAccountName": st.none() | names,
            "imagePullSecrets": st.lists(names, max_size=2),
            "envFromSecrets": st.lists(names, max_size=2),
        }
        for key, strategy in optional.items():
            if draw(st.booleans()):
                task[key] = draw(strategy)
        earlier = tasks[:i]
        if earlier:
            task["depends_on"] = draw(st.lists(st.sampled_from([t["name"] for t in earlier]),
                                               max_size=2, unique=True))
            producers = [t for t in earlier if t.get("outputs")]
            inputs: list[dict[str, str]] = []
            for producer in draw(st.lists(st.sampled_from(producers), max_size=2)
                                 if producers else st.just([])):
                spec = {"fromTask": producer["name"], "name": f"in{len(inputs)}"}
                if len(producer["outputs"]) > 1 or draw(st.booleans()):
                    spec["artifact"] = draw(st.sampled_from(producer["outputs"]))
                inputs.append(spec)
            task["inputs"] = inputs
        tasks.append(task)
    doc: dict[str, Any] = {"apiVersion": "v1", "dagName": draw(names), "tasks": tasks}
    if draw(st.booleans()):
        doc["useCache"] = draw(st.booleans())
    return doc


@settings(FUZZ, max_examples=60)
@given(valid_documents())
def test_valid_documents_round_trip(doc: dict[str, Any]) -> None:
    dag = parse_dag(doc)
    stored = dag.to_document()
    assert parse_dag(stored) == dag
    # As the API stores it (orjson) and as a user would write it back (JSON, YAML).
    assert parse_dag(orjson.loads(orjson.dumps(stored))) == dag
    assert parse_dag_document(json.dumps(doc).encode(), JSON) == dag
    # Escaped: PyYAML's emitter writes U+0085 raw with allow_unicode and its reader then
    # folds it as a line break (a PyYAML bug, not ours).
    assert parse_dag_document(to_yaml(stored, allow_unicode=False).encode(), YAML) == dag
    assert parse_dag_document(to_yaml(doc, allow_unicode=False).encode(), "text/yaml") == dag
