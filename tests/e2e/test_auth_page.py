"""The web page's token handling, run for real: the page's own script, as `GET /` serves
it, executed by Node against the running stack with a minimal stand-in for the DOM,
`localStorage` and `prompt` (no browser on this machine; the fetch, streams and
headers are Node's real ones). The page asks for the token once, keeps it, and sends it
on every call, the live feed included."""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import aiohttp
import pytest

from tests.conftest import WRITE_TOKEN
from tests.stack import Stack

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs node")

DAG = 'apiVersion: v1\ndagName: "page"\ntasks:\n  - {name: one, image: x, command: ["true"]}\n'

HARNESS = r"""
const {BASE, HTML, DAG, ANSWERS} = process.env;
const script = HTML.match(/<script>([\s\S]*?)<\/script>/)[1];
const elements = {};
const el = (id) => elements[id] ??= {id, value: "", checked: true, textContent: "", children: [],
                                     appendChild(c) { this.children.push(c); }};
el("dag").value = DAG;
globalThis.document = {getElementById: el, createElement: () => ({textContent: "", className: ""})};
const store = new Map();
globalThis.localStorage = {getItem: (k) => store.has(k) ? store.get(k) : null,
                           setItem: (k, v) => store.set(k, String(v)), removeItem: (k) => store.delete(k)};
const answers = JSON.parse(ANSWERS);
let prompts = 0;
globalThis.prompt = () => answers[prompts++] ?? null;
const realFetch = globalThis.fetch;
const requests = [];
globalThis.fetch = (path, init = {}) => {
  requests.push({path, auth: (init.headers || {})["Authorization"] || null});
  return realFetch(BASE + path, init);
};
new Function(script)();
const runs = [];
for (const _ of [1, 2]) {
  el("out").children = [];
  await el("go").onclick();
  runs.push(el("out").children.map((c) => c.textContent));
}
console.log(JSON.stringify({prompts, stored: store.get("helios.token") ?? null, requests, runs}));
"""


async def run_page(api: str, html: str, answers: list[str]) -> dict:  # type: ignore[type-arg]
    env = {**os.environ, "BASE": api, "HTML": html, "DAG": DAG, "ANSWERS": json.dumps(answers)}
    proc = await asyncio.create_subprocess_exec(
        "node", "--input-type=module", "-e", HARNESS, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_the_page_asks_once_and_sends_the_token_everywhere(stack: Stack) -> None:
    async with aiohttp.ClientSession() as anon, anon.get(stack.api_url + "/") as resp:
        assert resp.status == 200  # the shell is public: it has to be, to ask for a token
        html = await resp.text()
    result = await run_page(stack.api_url, html, [WRITE_TOKEN])

    assert result["prompts"] == 1 and result["stored"] == WRITE_TOKEN
    first, *rest = result["requests"]
    assert first["auth"] is None  # nothing stored yet: the API's 401 makes the page ask
    assert rest and all(r["auth"] == f"Bearer {WRITE_TOKEN}" for r in rest), rest
    feeds = [r for r in rest if r["path"].endswith("/events")]
    assert len(feeds) >= 4, rest  # each run's feed, and the resume that hears 204 at the end
    for lines in result["runs"]:
        assert lines[0].startswith("run ") and lines[0].endswith(" submitted"), lines
        assert any(line.endswith("  run  SUCCEEDED") for line in lines), lines
        assert any("one (attempt 1)  SUCCEEDED" in line for line in lines), lines


async def test_the_page_replaces_a_refused_token(stack: Stack) -> None:
    async with aiohttp.ClientSession() as anon, anon.get(stack.api_url + "/") as resp:
        html = await resp.text()
    # The first answer is wrong: the API refuses it, the page forgets it and asks again.
    result = await run_page(stack.api_url, html, ["not-a-configured-token-123", WRITE_TOKEN])
    assert result["prompts"] == 2 and result["stored"] == WRITE_TOKEN
    assert [r["auth"] for r in result["requests"][:3]] == [
        None, "Bearer not-a-configured-token-123", f"Bearer {WRITE_TOKEN}"]
    assert all(any(line.endswith("  run  SUCCEEDED") for line in lines) for lines in result["runs"])
