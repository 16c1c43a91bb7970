#!/usr/bin/env bash
# Everything the test suite needs, installed when missing: run by scripts/test.sh (and so by .ci/run,
# which runs scripts/test.sh) so that a fresh clone needs no other command, and so that CI and a
# developer's machine can never be set up differently. Idempotent, and quick when all is there.
#
#   bash scripts/setup.sh [STEP...]     steps: python apt npm venv (default: all, in that order)
#
#   python  Python >= 3.11 (SFR_PYTHON, default python3)
#   apt     the Debian packages listed in .ci/apt-packages.txt (one per line, # comments), plus
#           python3-venv when the Python lacks ensurepip. As root: apt-get install. Otherwise: prints
#           the exact apt-get line to run and stops. SFR_SKIP_APT=1 skips this step (tests that need
#           a missing tool are then skipped, and fail under CI=true).
#   npm     `npm ci` in every tests/*/ with a package-lock.json (the test servers), again only when the
#           lock file changed since the last install
#   venv    .venv (SFR_VENV) with the project installed editable with its test extras (scripts/venv.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(python apt npm venv)
PYTHON="${SFR_PYTHON:-python3}"
APT_LIST="${SFR_APT_PACKAGES:-.ci/apt-packages.txt}"
NODE_MIN=20.19  # tests/tus-server/package.json "engines" (@tus/server 2.x); tests/transport_fixtures.py

say() { printf 'setup: %s\n' "$*" >&2; }

# Two test runs started together in one checkout set up one after the other (npm ci, pip).
if command -v flock >/dev/null 2>&1 && [ -w . ]; then
  exec 9>".setup.lock"
  flock 9
fi

step_python() {
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    say "no $PYTHON on PATH: sfr-gateway needs Python >= 3.11"; exit 1
  fi
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "sfr-gateway needs Python >= 3.11; $PYTHON is $("$PYTHON" -V 2>&1) (set SFR_PYTHON to another one)"; exit 1
  fi
}

installed() {  # a Debian package is installed (not merely known, e.g. removed with its config files left)
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

step_apt() {
  [ "${SFR_SKIP_APT:-0}" = 1 ] && { say "SFR_SKIP_APT=1: Debian packages not checked"; return 0; }
  local wanted=() missing=() p
  if [ -f "$APT_LIST" ]; then
    mapfile -t wanted < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$APT_LIST" | sort -u)
  fi
  # Debian's python3 comes without ensurepip (so without `python -m venv`) until python3-venv is there.
  if [ ! -x "${SFR_VENV:-$PWD/.venv}/bin/python" ] && ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    wanted+=(python3-venv)
  fi
  [ ${#wanted[@]} -gt 0 ] || return 0
  if ! command -v dpkg-query >/dev/null 2>&1; then
    say "not a Debian system: install the equivalents of ${wanted[*]} yourself; tests needing a missing one are skipped"
    return 0
  fi
  for p in "${wanted[@]}"; do installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  local line="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    say "the tests need Debian packages that are not installed; as root, run:"
    printf '    %s\n' "$line" >&2
    say "then run this command again (or SFR_SKIP_APT=1 to run without them: those tests are skipped)"
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt run (several engineers share machines) rather than failing on its lock.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

step_npm() {
  local lock dir stamp sum
  for lock in tests/*/package-lock.json; do
    [ -f "$lock" ] || continue
    dir="$(dirname "$lock")"
    stamp="$dir/node_modules/.sfr-setup-lock.sha256"
    sum="$(sha256sum "$lock" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then continue; fi
    if ! command -v npm >/dev/null 2>&1; then
      say "npm not found: $dir not installed (its tests are skipped; they fail under CI=true)"; continue
    fi
    say "npm ci in $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
    printf '%s\n' "$sum" > "$stamp"
  done
  if command -v node >/dev/null 2>&1; then
    local version
    version="$(node --version 2>/dev/null | sed 's/^v//')"
    if [ "$(printf '%s\n%s\n' "$NODE_MIN" "$version" | sort -V | head -n 1)" != "$NODE_MIN" ]; then
      say "node $version is older than $NODE_MIN (Debian bookworm ships 18: install nodejs 20.x from NodeSource);"
      say "the tus tests are skipped (they fail under CI=true)"
    fi
  fi
}

step_venv() {
  # shellcheck source=scripts/venv.sh
  . scripts/venv.sh
}

for s in "${steps[@]}"; do
  case "$s" in
    python|apt|npm|venv) "step_$s" ;;
    *) say "unknown step: $s (steps: python apt npm venv)"; exit 2 ;;
  esac
done
