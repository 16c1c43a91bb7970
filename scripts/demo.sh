#!/usr/bin/env bash
# The main job, end to end, on a generated sample export (synthetic chest CT with fake PHI).
# Sets up its own virtual environment in .venv; writes everything under ./demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
DEMO="$PWD/demo"
rm -rf "$DEMO"
mkdir -p "$DEMO"
python -c "from sfr_gateway.sample import generate_export; e = generate_export('$DEMO/export', patients=6, seed=1); print(f'generated {len(e.files)} files of {len(e.patients)} invented patients in $DEMO/export')"
sfr-gateway --home "$DEMO/home" init --site-id DEMO01 --export "$DEMO/export"
sfr-gateway --home "$DEMO/home" scan "$DEMO/export"
echo
echo "Result: gateway HOME $DEMO/home (ledger state.db, keys/), index of $DEMO/export"
