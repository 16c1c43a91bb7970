#!/usr/bin/env bash
# The whole test suite (the same gates as CI). Sets up its own virtual environment in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
python -m pytest "$@"
