#!/usr/bin/env bash
# Helios's two commands on a fresh Debian machine with Python 3.11:
#   ./run.sh demo   set up, start the embedded stack, run the seed example twice, stop
#   ./run.sh test   set up, run the whole test suite
#   ./run.sh dev    set up, run the embedded stack until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")"

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

setup() {
  # bubblewrap gives each local task its private root with /artifacts.
  command -v bwrap >/dev/null || apt_install bubblewrap
  # slirp4netns gives tasks internet access when HELIOS_LOCAL_NETWORK=outbound (tests use it).
  command -v slirp4netns >/dev/null || apt_install slirp4netns
  # openssl makes the per-start certificates that lock SeaweedFS's gRPC ports (helios dev).
  command -v openssl >/dev/null || apt_install openssl
  local py="${PYTHON:-python3.11}"
  command -v "$py" >/dev/null || py=python3
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv 2>/dev/null || { apt_install python3-venv && "$py" -m venv .venv; }
  fi
  # Reinstall only when the dependencies changed.
  local stamp=".venv/.helios-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing Helios and its embedded servers into .venv ..." >&2
    if ! { .venv/bin/python -m pip install -q --upgrade pip \
           && .venv/bin/python -m pip install -q -e ".[test]"; } >.venv/install.log 2>&1; then
      cat .venv/install.log >&2
      exit 1
    fi
    touch "$stamp"
  fi
  build_web
}

# The web page (web/) is built into services/api/static/, which the api serves; it is not
# committed, so it is built here whenever a source or the lockfile is newer than the build.
build_web() {
  local out=services/api/static/index.html
  if [ -f "$out" ] && [ -z "$(find web/src web/index.html web/package.json web/package-lock.json \
        web/vite.config.ts -newer "$out" -print -quit)" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null; then
    echo "warning: node and npm are needed to build the web page; the API runs without it" >&2
    return 0
  fi
  echo "building the web page (web/) ..." >&2
  # npm ci only when the lockfile changed since node_modules was installed.
  if ! ( cd web \
         && { [ node_modules/.package-lock.json -nt package-lock.json ] \
              || npm ci --no-audit --no-fund; } \
         && npm run build ) >.venv/web-build.log 2>&1; then
    cat .venv/web-build.log >&2
    exit 1
  fi
}

case "${1:-}" in
  demo)
    setup
    shift
    exec .venv/bin/helios demo "$@"
    ;;
  dev)
    setup
    shift
    exec .venv/bin/helios dev "$@"
    ;;
  test)
    # kubectl renders the kustomize overlays in the deploy tests.
    command -v kubectl >/dev/null || apt_install kubectl || true
    # Chromium drives the web page's browser tests (tests/web; Playwright never downloads one),
    # and Firefox ESR its journey in the other engine (over WebDriver BiDi).
    browsers=()
    command -v chromium >/dev/null || browsers+=(chromium)
    command -v firefox-esr >/dev/null || browsers+=(firefox-esr)
    [ ${#browsers[@]} -eq 0 ] || apt_install "${browsers[@]}"
    setup
    shift
    # Lint and types first: a style or type error fails the run like a failing test.
    .venv/bin/ruff check .
    .venv/bin/mypy
    # Three workers on two cores: most tests wait on servers and processes, not the CPU.
    # tests/web stays on one worker (tests/conftest.py); each worker has its own servers.
    exec .venv/bin/python -m pytest -q -n "${HELIOS_TEST_WORKERS:-3}" --dist loadgroup "$@"
    ;;
  *)
    echo "usage: $0 demo|test|dev [args]" >&2
    exit 2
    ;;
esac
