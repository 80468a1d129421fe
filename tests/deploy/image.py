"""The image short of `docker build` (no Docker engine here): its build context as
`.dockerignore` admits it, the builder stage's `pip install .` of that context, and the
commands that the manifests and the task Jobs give the Helios image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from helios.settings import KubernetesSettings

from .render import (
    IMAGE_REPO,
    OVERLAYS,
    ROOT,
    containers,
    pod_spec,
    rendered,
    task_job,
    workloads,
)

TASK_IMAGE = KubernetesSettings().task_image  # what task_job() gives the helpers
WEB_OUTPUT = "services/api/static"  # `COPY --from=web` puts the page here


def _regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus `**`) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignore_rules(text: str) -> list[tuple[bool, str, re.Pattern[str]]]:
    """(negated, literal prefix, regex) per line, in order: the last match wins."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        prefix = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
        rules.append((negated, prefix, _regex(pattern)))
    return rules


def excluded(rules: list[tuple[bool, str, re.Pattern[str]]], rel: str) -> bool:
    """As Docker decides it: a pattern matching the path or one of its parents."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    out = False
    for negated, _, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            out = not negated
    return out


def build_context(root: Path = ROOT) -> list[str]:
    """Every file `docker build .` would send (relative paths, sorted)."""
    rules = ignore_rules((root / ".dockerignore").read_text())
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        base = os.path.relpath(folder, root)
        base = "" if base == "." else base + "/"
        # Skip a folder that is excluded unless a `!` rule may admit something inside.
        dirs[:] = [d for d in dirs if not excluded(rules, base + d)
                   or any(neg and p.startswith(base + d) for neg, p, _ in rules)]
        found += [base + f for f in files if not excluded(rules, base + f)]
    return sorted(found)


def install_like_the_builder(target: Path, work: Path) -> Path:
    """The builder stage: the context, the web stage's output, then `pip install .`.
    Offline (`--no-index`, no build isolation): setuptools comes from the test extra."""
    import setuptools

    assert int(setuptools.__version__.split(".")[0]) >= 77, \
        "setuptools >= 77 is needed (pyproject's SPDX license): pip install -e '.[test]'"
    src = work / "src"
    for rel in build_context():
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest)
    page = ROOT / WEB_OUTPUT
    if page.is_dir():  # built by ./run.sh (npm run build), as the image's web stage does
        shutil.copytree(page, src / WEB_OUTPUT)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(target), str(src)],
                   check=True, capture_output=True, timeout=120, cwd=work)
    return target


def image_commands() -> Iterator[tuple[str, list[str]]]:
    """(where, argv) of every command run in the Helios image: the services, hooks and
    Jobs of both overlays, and the helpers of task Jobs with and without inputs/outputs."""
    for overlay in OVERLAYS:
        for workload in workloads(rendered(f"overlays/{overlay}")):
            for c in containers(pod_spec(workload)):
                if not c["image"].startswith(IMAGE_REPO):
                    continue
                where = f"{overlay}: {workload['kind']}/{workload['metadata']['name']}/{c['name']}"
                yield where, [*c.get("command", []), *c.get("args", [])]
                for hook in (c.get("lifecycle") or {}).values():
                    if "exec" in hook:
                        yield where + " (hook)", hook["exec"]["command"]
    for inputs, outputs in ((True, True), (False, True), (True, False)):
        job = task_job(inputs=inputs, outputs=outputs)
        for c in containers(job["spec"]["template"]["spec"]):
            if c["image"] == TASK_IMAGE:
                yield f"task Job: {c['name']}", [*c.get("command", []), *c.get("args", [])]
