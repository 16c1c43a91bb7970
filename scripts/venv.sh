# Sourced by demo.sh and test.sh: create .venv once and install the project with its test extras.
# Re-installs when pyproject.toml changed since the last install.
VENV="${SFR_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.sfr-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "${SFR_REINSTALL:-0}" = 1 ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install --quiet -e ".[test]"
  touch "$stamp"
fi
# Byte-compile the sources (an editable install does not; pip does for an installed package):
# where PYTHONDONTWRITEBYTECODE is set, every command would otherwise compile them at each start.
"$VENV/bin/python" -m compileall -q sfr_gateway >/dev/null || true
export PATH="$VENV/bin:$PATH"
