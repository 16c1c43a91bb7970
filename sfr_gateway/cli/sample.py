"""``sfr-gateway sample OUTDIR``: a synthetic PACS export with invented patients and fake PHI, to
try the gateway (or train on it) without touching real data. Also ``python -m sfr_gateway.sample``."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError
from .common import echo_json


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--patients", type=click.IntRange(1, 10_000), default=3, show_default=True, help="Invented patients.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same export (names, IDs, UIDs).")
@click.option("--slices", type=click.IntRange(1, 2000), default=6, show_default=True, help="Images per CT series.")
@click.option("--size", type=click.IntRange(8, 1024), default=64, show_default=True, help="Image rows and columns.")
@click.option("--chest-only", is_flag=True,
              help="Only one axial chest series per patient (no localizers, dose reports, head CT, MR, follow-ups).")
@click.option("--consent-csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a consent CSV (every patient consented) for `sfr-gateway consent import`.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def sample(outdir: Path, patients: int, seed: int, slices: int, size: int, chest_only: bool,
           consent_csv: Path | None, as_json: bool) -> None:
    """Write a synthetic export (chest CT with fake PHI: nothing real) under OUTDIR.

    Patients get chest CT studies in the collection window, and unless --chest-only also
    localizers, dose reports, head CT, an out-of-window study and MR: what `run` must leave out.
    """
    from ..sample import generate_export

    if outdir.exists() and any(outdir.iterdir()):
        raise InputError(f"{outdir} is not empty: give a new folder")
    export = generate_export(outdir, patients=patients, seed=seed, rows=size, cols=size, slices=slices,
                             extras=not chest_only)
    if consent_csv is not None:
        lines = ["patient_id;issuer;status;date;source;reference"]
        lines += [f"{p.patient_id};{p.issuer};consented;2020-03-02;sample;SAMPLE-{i:04d}"
                  for i, p in enumerate(export.patients)]
        consent_csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    people = [{"patient_id": p.patient_id, "issuer": p.issuer, "studies": len(p.study_uids)} for p in export.patients]
    if as_json:
        echo_json({"root": str(export.root), "files": len(export.files), "patients": people,
                   "consent_csv": str(consent_csv) if consent_csv else None})
        return
    click.echo(f"generated {len(export.files)} files of {len(export.patients)} invented patients in {export.root}")
    for p in people:
        click.echo(f"  patient {p['patient_id']} (issuer {p['issuer']}): {p['studies']} studies")
    if consent_csv is not None:
        click.echo(f"consent CSV (every patient consented): {consent_csv}")


COMMANDS = [sample]
