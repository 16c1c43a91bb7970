# Sourced by demo.sh and scripts/setup.sh (so by test.sh): create .venv once and install the project
# editable with its test extras; re-install when pyproject.toml or setup.py changed since the last one.
VENV="${SFR_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  echo "setup: creating the virtual environment $VENV" >&2
  "${SFR_PYTHON:-python3}" -m venv --clear "$VENV"
fi
stamp="$VENV/.sfr-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] || [ "${SFR_REINSTALL:-0}" = 1 ]; then
  echo "setup: installing sfr-gateway and its test dependencies into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  # Its output goes to a log, shown on failure: setuptools notes that an editable install maps
  # profiles/ through an import hook ("Editable installation..."), which is expected here.
  if ! "$VENV/bin/python" -m pip install --quiet -e ".[test]" >"$VENV/pip-install.log" 2>&1; then
    cat "$VENV/pip-install.log" >&2
    return 1 2>/dev/null || exit 1
  fi
  touch "$stamp"
fi
# Byte-compile the sources (an editable install does not; pip does for an installed package):
# where PYTHONDONTWRITEBYTECODE is set, every command would otherwise compile them at each start.
"$VENV/bin/python" -m compileall -q sfr_gateway >/dev/null || true
export PATH="$VENV/bin:$PATH"
