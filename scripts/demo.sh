#!/usr/bin/env bash
# The main job, end to end, on a generated sample export (synthetic chest CT with fake PHI):
# enrol a site with a (local, demo) central host key, record consent, then `sfr-gateway run`
# to the embedded default destination (a drop folder in HOME); finally open what arrived as the
# central host would, and check it with the independent verifier.
# Sets up its own virtual environment in .venv; writes everything under ./demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
DEMO="$PWD/demo"
rm -rf "$DEMO"
mkdir -p "$DEMO/central"
python - "$DEMO" <<'PY'
import sys
from pathlib import Path
from sfr_gateway.sample import generate_export
demo = Path(sys.argv[1])
export = generate_export(demo / "export", patients=6, seed=1)
print(f"generated {len(export.files)} files of {len(export.patients)} invented patients in {export.root}")
# Consent: five patients consented, the last one refused (the gate must hold their studies back).
lines = ["patient_id;issuer;status;date;source;reference"]
for i, p in enumerate(export.patients):
    status = "refused" if i == len(export.patients) - 1 else "consented"
    lines.append(f"{p.patient_id};{p.issuer};{status};2020-03-02;form;DEMO-{i:03d}")
(demo / "consent.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
PY
echo "== central host: make its age key (what it gives every site)"
recipient=$(sfr-gateway central keygen --output "$DEMO/central/central.key" | grep -o 'age1[0-9a-z]*' | head -n 1)
echo "== site: init, consent import, run"
sfr-gateway --home "$DEMO/home" init --site-id DEMO01 --central-recipient "$recipient" --export "$DEMO/export" >/dev/null
sfr-gateway --home "$DEMO/home" consent import "$DEMO/consent.csv"
sfr-gateway --home "$DEMO/home" run
sfr-gateway --home "$DEMO/home" status
echo "== central host: register the site's public key, then verify signatures, decrypt, check manifests, unpack"
export SFR_CENTRAL_HOME="$DEMO/central/home"
sfr-gateway central site add DEMO01 "$DEMO/home/keys/site-signing.pub"
for batch in "$DEMO/home/dropbox"/*.tar.zst.age; do
  sfr-gateway central open "$batch" --identity "$DEMO/central/central.key" --output "$DEMO/central/received"
done
echo "== independent residual-PHI check of what arrived"
sfr-gateway --home "$DEMO/home" verify "$DEMO/central/received" --against "$DEMO/export" --json > "$DEMO/verify.json" \
  && echo "verify: no residual PHI found (report: $DEMO/verify.json)"
echo
echo "Result: encrypted, signed batches in $DEMO/home/dropbox (the embedded default destination);"
echo "        what the central host unpacked in $DEMO/central/received; the gateway HOME is $DEMO/home."
