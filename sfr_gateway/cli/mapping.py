"""``sfr-gateway mapping``: look up, regenerate, verify and export the local pseudonym mapping.

Light at import: the library (cryptography, pydicom, profiles) is imported inside each command.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import MappingError
from ..ledger import open_ledger
from .common import GatewayContext, echo_json, pass_gateway


@click.group()
def mapping() -> None:
    """The local pseudonym <-> patient mapping (encrypted at rest; never leaves the site)."""


@mapping.command("lookup")
@click.argument("pseudonym", required=False)
@click.option("--patient-id", help="Look up a local patient ID instead of a pseudonym.")
@click.option("--issuer", default=None, help="Issuer of the patient ID (default: any issuer).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def lookup_cmd(gw: GatewayContext, pseudonym: str | None, patient_id: str | None, issuer: str | None,
               as_json: bool) -> None:
    """Who is PSEUDONYM, or what is the pseudonym of --patient-id ID. Each lookup is recorded."""
    from ..mapping.lookup import lookup

    if (pseudonym is None) == (patient_id is None):
        raise click.UsageError("give a PSEUDONYM or --patient-id ID (one of them)")
    if issuer is not None and patient_id is None:
        raise click.UsageError("--issuer goes with --patient-id")
    cfg = gw.config()
    with open_ledger(gw.home.state_db) as ledger:
        matches = lookup(ledger, gw.home, pseudonym=pseudonym, patient_id=patient_id, issuer=issuer, config=cfg)
    if as_json:
        echo_json({"matches": [m.as_dict() for m in matches]})
    elif not matches:
        click.echo("no match")
    for m in matches if not as_json else []:
        state = "current secret" if m.current_secret else f"previous secret {m.secret_fp}"
        click.echo(f"{m.pseudonym}  patient {m.patient_id}  issuer {m.issuer or '-'}  "
                   f"date offset {m.date_offset if m.date_offset is not None else '-'} days  ({state})")
        for s in m.studies:
            click.echo(f"  study {s['study_uid']} -> {s['new_study_uid']}  accession "
                       f"{s['accession'] or '-'} -> {s['new_accession'] or '-'}")


@mapping.command("regenerate")
@click.argument("sources", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.option("--all-studies", is_flag=True, help="Map every indexed study, not only eligible ones.")
@click.option("--dry-run", is_flag=True, help="Recompute and compare; write nothing.")
@click.option("--discard-unreadable", is_flag=True,
              help="Drop rows sealed under a lost mapping key (keys/mapping.key replaced) and rebuild them.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def regenerate_cmd(gw: GatewayContext, sources: tuple[Path, ...], all_studies: bool, dry_run: bool,
                   discard_unreadable: bool, as_json: bool) -> None:
    """Rebuild the mapping from the ledger's index (rescanning SOURCES first) and the secret.

    Every pseudonym already released is compared with the recomputation: a mismatch (the
    pseudonym secret changed) is named and nothing is written (exit 14).
    """
    from ..mapping.regenerate import regenerate

    cfg = gw.config()
    with open_ledger(gw.home.state_db) as ledger:
        report = regenerate(ledger, cfg, list(sources), eligible_only=not all_studies, dry_run=dry_run,
                            discard_unreadable=discard_unreadable)
    if as_json:
        echo_json(report.as_dict())
        return
    verb = "written" if report.written else "not written (dry run)"
    click.echo(f"mapping regenerated: {report.studies} studies of {report.patients} patients, "
               f"{report.unchanged} unchanged, {report.added} new or completed; {verb}")
    click.echo(f"released pseudonyms checked: {report.released_checked} ({report.released_ok} match, "
               f"{report.released_unverified} not in the sources, {report.released_rotated} before a rotation)")
    if report.accession_unread:
        click.echo(f"warning: {report.accession_unread} studies: no readable file for the accession number",
                   err=True)


@mapping.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def verify_cmd(gw: GatewayContext, as_json: bool) -> None:
    """Check the stored mapping against a recomputation with the pseudonym secret (exit 14 if not)."""
    from ..mapping.regenerate import CheckReport, verify

    cfg = gw.config()
    report: CheckReport | None = None
    with open_ledger(gw.home.state_db) as ledger:
        try:
            report = verify(ledger, cfg)
        except MappingError as exc:
            if as_json:
                echo_json({"ok": False, "error": str(exc)})
            raise
    if as_json:
        echo_json({"ok": True, **report.as_dict()})
        return
    click.echo(f"mapping verified: {report.stored_ok} of {report.stored_checked} entries recomputed identically "
               f"({report.stored_other_secret} under an archived secret); "
               f"{report.released_ok} of {report.released_checked} released pseudonyms mapped")


@mapping.command("export")
@click.option("--recipient", required=True, metavar="AGE_PUBLIC_KEY", help="The DPO's age public key (age1...).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Encrypted output file (default: ./sfr-gateway-mapping-SITE-DATE.FORMAT.age).")
@pass_gateway
def export_cmd(gw: GatewayContext, recipient: str, fmt: str, output: Path | None) -> None:
    """Export the mapping for the data-protection officer, encrypted to their age key only."""
    from ..mapping.export import export_mapping

    cfg = gw.config()
    with open_ledger(gw.home.state_db) as ledger:
        result = export_mapping(ledger, cfg, recipient, fmt=fmt, output=output)
    click.echo(f"{result.entries} entries ({result.patients} patients) encrypted to {result.recipient}: "
               f"{result.output}")
    click.echo(f"decrypt with: age -d -i DPO_KEY_FILE {result.output}")


COMMANDS = [mapping]
