"""The tokens file parser, the constant-time lookup, and the CLI's and `helios dev`'s tokens."""

from __future__ import annotations

import hmac
import inspect
from pathlib import Path

import pytest

from helios.auth_tokens import (
    READ,
    WRITE,
    TokenFileError,
    allows,
    bearer_token,
    digest,
    ensure_dev_tokens,
    find_token,
    parse_tokens,
    scope_of,
)

W = "w" * 20 + "-write_token"
R = "r" * 20 + "~read.token+/=="


def test_a_file_with_comments_blank_lines_and_both_scopes() -> None:
    text = f"# ci jobs\n\nwrite {W}   # trailing note\n  read\t{R}\n   \n# end\n"
    entries = parse_tokens(text)
    assert [(e.scope, e.line) for e in entries] == [(WRITE, 3), (READ, 4)]
    assert entries[0].digest == digest(W)  # only digests are kept
    assert parse_tokens("# nothing yet\n") == []


@pytest.mark.parametrize(("text", "line", "reason"), [
    (f"write {W}\nadmin {R}\n", 2, "first field must be a scope"),
    (f"write {W}\n{R} read\n", 2, "first field must be a scope"),  # swapped: never echoed
    (f"\n\nwrite {W} extra\n", 3, "2 fields"),
    (f"{W}\n", 1, "2 fields"),
    ("read short-token\n", 1, "16 to 1024 characters"),
    ("read " + "x" * 1025 + "\n", 1, "16 to 1024 characters"),
    ("read abcdefghijklmnop\u00e9q\n", 1, "b64token"),
    ("read abcdefghijklmnopq=r\n", 1, "b64token"),
    (f"write {W}\n# again\nread {W}\n", 3, "same token as line 1"),
])
def test_a_bad_line_is_named_by_number_never_by_its_token(text: str, line: int, reason: str) -> None:
    with pytest.raises(TokenFileError) as err:
        parse_tokens(text)
    message = str(err.value)
    assert f"line {line}:" in message and reason in message
    for token in (W, R, "short-token", "x" * 40, "abcdefghijklmnop"):
        assert token not in message


def test_scopes_and_write_implies_read() -> None:
    entries = parse_tokens(f"write {W}\nread {R}\n")
    assert scope_of(entries, W) == WRITE
    assert scope_of(entries, R) == READ
    assert scope_of(entries, W[:-1]) is None
    assert scope_of(entries, W + "x") is None
    assert scope_of([], W) is None
    assert allows(WRITE, READ) and allows(WRITE, WRITE) and allows(READ, READ)
    assert not allows(READ, WRITE)


def test_every_configured_token_is_compared_with_hmac_compare_digest() -> None:
    """The lookup never stops at the first match (or miss): each configured digest goes
    through the standard library's constant-time compare, whichever token is presented."""
    tokens = [f"token-{i:02d}-" + "k" * 16 for i in range(7)]
    entries = parse_tokens("".join(f"{READ if i % 2 else WRITE} {t}\n" for i, t in enumerate(tokens)))
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    assert inspect.signature(scope_of).parameters["same"].default is hmac.compare_digest
    for presented, scope in ((tokens[0], WRITE), (tokens[-1], WRITE), (tokens[3], READ),
                             ("unknown-" + "z" * 16, None)):
        calls.clear()
        assert scope_of(entries, presented, same=counting) == scope
        assert sorted(a for a, _ in calls) == sorted(e.digest for e in entries)
        assert {b for _, b in calls} == {digest(presented)}  # digests, equal length


@pytest.mark.parametrize(("header", "token"), [
    (f"Bearer {W}", W), (f"bearer   {W} ", W), (f"BEARER {W}", W),
    (None, None), ("", None), ("Bearer", None), ("Bearer   ", None), (f"Basic {W}", None),
    (W, None),
])
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_dev_tokens_are_private_and_made_once(tmp_path: Path) -> None:
    data = tmp_path / ".helios"
    tokens_file = ensure_dev_tokens(data)
    token = (data / "auth" / "token").read_text().strip()
    assert (data / "auth").stat().st_mode & 0o777 == 0o700
    for path in (tokens_file, data / "auth" / "token"):
        assert path.stat().st_mode & 0o777 == 0o600
    assert scope_of(parse_tokens(tokens_file.read_text()), token) == WRITE
    with tokens_file.open("a") as f:
        f.write(f"read {R}\n")  # a user's addition survives the next start
    assert ensure_dev_tokens(data) == tokens_file
    assert (data / "auth" / "token").read_text().strip() == token
    assert scope_of(parse_tokens(tokens_file.read_text()), R) == READ


def test_the_cli_finds_its_token(tmp_path: Path) -> None:
    assert find_token(None, {}, tmp_path) is None
    ensure_dev_tokens(tmp_path / ".helios")
    dev = (tmp_path / ".helios" / "auth" / "token").read_text().strip()
    assert find_token(None, {}, tmp_path) == dev
    assert find_token(None, {"HELIOS_TOKEN": f" {R}\n"}, tmp_path) == R
    assert find_token(W, {"HELIOS_TOKEN": R}, tmp_path) == W
    assert find_token(None, {"HELIOS_TOKEN": ""}, tmp_path) == dev
    for local in ("http://localhost:8080", "http://127.0.0.1:9", "http://[::1]:8080/"):
        assert find_token(None, {}, tmp_path, api_url=local) == dev
    # The local dev token is never sent to another machine; an explicit one is.
    assert find_token(None, {}, tmp_path, api_url="https://helios.example.com") is None
    assert find_token(None, {"HELIOS_TOKEN": R}, tmp_path, api_url="https://helios.example.com") == R
