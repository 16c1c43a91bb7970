#!/usr/bin/env bash
# The whole test suite (the same gates as CI). First installs what the tests need when it is missing
# (scripts/setup.sh: Debian packages, the npm test servers, the virtual environment .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="${SFR_VENV:-$PWD/.venv}/bin:$PATH"
python -m pytest "$@"
