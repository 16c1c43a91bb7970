"""``sfr-gateway consent ...``: record, import, list and withdraw consent; show coverage.

``consent list`` and ``consent show`` print local patient IDs: they are local admin commands
(the registry exists to hold them). Nothing here logs a patient value.
"""

from __future__ import annotations

import datetime as dt
import getpass
import importlib
import os
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ..consent import registry as lib
from ..consent.csvimport import parse_date
from ..errors import ConsentError, GatewayError
from ..home.config import Config
from ..keys.files import load_pseudonym_secret, load_signing_key
from ..ledger import open_ledger
from .common import GatewayContext, echo_json, pass_gateway, wide_console


def _today() -> dt.date:
    """The local calendar date (the only clock read of the consent commands)."""
    return dt.date.today()


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def _date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return parse_date(value)
    except ValueError:
        raise ConsentError("--date: use YYYY-MM-DD or DD/MM/YYYY") from None


def pseudonym_function(config: Config) -> lib.PseudonymFor:
    """``pseudonym_for(patient_id, issuer)`` from the de-identification engine and the site secret."""
    try:
        mod = importlib.import_module("sfr_gateway.deid.pseudonym")
        keys = mod.PseudonymKeys(secret=load_pseudonym_secret(config.home), site_id=config.site_id)
        pseudonymizer = mod.Pseudonymizer.for_plan(keys)
        patient_key = mod.patient_key
    except (ImportError, AttributeError):
        raise ConsentError("recording a withdrawal needs the de-identification engine "
                           "(sfr_gateway.deid.pseudonym), missing from this build") from None

    def pseudonym_for(patient_id: str, issuer: str) -> str:
        return str(pseudonymizer.patient(patient_key(patient_id, issuer)))

    return pseudonym_for


def withdrawer(config: Config) -> lib.Withdrawer:
    """The site id, pseudonym function and site signing key a withdrawal needs."""
    return lib.Withdrawer(site_id=config.site_id, pseudonym_for=pseudonym_function(config),
                          signer=lib.minisign_signer(load_signing_key(config.home), config.site_id))


def optional_withdrawer(config: Config) -> lib.Withdrawer | None:
    """The withdrawer when the keys are there (a refusal needs it only if data already left;
    the library says so then)."""
    try:
        return withdrawer(config)
    except GatewayError:
        return None


@click.group()
def consent() -> None:
    """Consent registry: record, import, list, withdraw; the release gate's coverage."""


@consent.command("set")
@click.argument("patient_id")
@click.argument("status", type=click.Choice(lib.STATUSES))
@click.option("--issuer", default="", help="IssuerOfPatientID of the patient ID (default: none given; see the "
              "README's identity rules).")
@click.option("--date", "date_", metavar="DATE", help="Effective date (default today): YYYY-MM-DD or DD/MM/YYYY.")
@click.option("--source", default="manual", show_default=True, help="form, ehr-export, manual...")
@click.option("--reference", default="", help="Document reference (form number, EHR document id).")
@click.option("--operator", default=None, help="Who records it (default: the current user).")
@click.option("--reason", default="", help="Free text (correction note, withdrawal reason).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def set_cmd(gw: GatewayContext, patient_id: str, status: str, issuer: str, date_: str | None, source: str,
            reference: str, operator: str | None, reason: str, as_json: bool) -> None:
    """Record STATUS for PATIENT_ID (a new history event; nothing is ever edited)."""
    config = gw.config()
    w = withdrawer(config) if status == "withdrawn" else optional_withdrawer(config) if status == "refused" else None
    with open_ledger(config.home.state_db) as ledger:
        change = lib.set_status(ledger, patient_id, status, issuer=issuer, effective=_date(date_), source=source,
                                reference=reference, operator=operator or _operator(), reason=reason,
                                today=_today(), withdrawer=w, issuers=config.consent.issuers)
    _report_change(change, as_json)


@consent.command("withdraw")
@click.argument("patient_id")
@click.option("--issuer", default="", help="IssuerOfPatientID of the patient ID (default: none given, which "
              "withdraws the Patient ID under every issuer).")
@click.option("--reason", default="", help="Why (kept locally, never sent).")
@click.option("--date", "date_", metavar="DATE", help="Effective date (default today).")
@click.option("--reference", default="", help="Document reference.")
@click.option("--operator", default=None, help="Who records it (default: the current user).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def withdraw_cmd(gw: GatewayContext, patient_id: str, issuer: str, reason: str, date_: str | None, reference: str,
                 operator: str | None, as_json: bool) -> None:
    """Withdraw PATIENT_ID for good: cancel pending batches, queue signed withdrawal requests."""
    config = gw.config()
    w = withdrawer(config)
    with open_ledger(config.home.state_db) as ledger:
        change = lib.withdraw(ledger, patient_id, w, issuer=issuer, reason=reason, effective=_date(date_),
                              reference=reference, operator=operator or _operator(), today=_today(),
                              issuers=config.consent.issuers)
    _report_change(change, as_json)


def _report_change(change: lib.Change, as_json: bool) -> None:
    if as_json:
        echo_json(change.as_dict())
        return
    text = {"recorded": f"recorded: {change.status}", "unchanged": f"unchanged: already {change.status}",
            "withdrawn": "withdrawn (permanent)", "already-withdrawn": "already withdrawn: nothing to do"}
    click.echo(text.get(change.outcome, change.outcome))
    if change.resolution is not None and change.outcome != "already-withdrawn":
        line = f"  {change.resolution.describe()}"
        click.echo(line, err=change.resolution.unresolved)
    if change.released_batches:
        click.echo(f"  ALREADY RELEASED: {change.released_studies} study(ies) left the site before this "
                   f"{change.status}, in batch(es) {', '.join(change.released_batches)}", err=True)
    if change.outcome == "withdrawn":
        click.echo(f"  pending batches cancelled: {change.batches_cancelled}")
    if change.outcome == "withdrawn" or change.released_batches:
        click.echo(f"  withdrawal requests queued for the central host: {change.requests_queued}")


@consent.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--all-or-nothing", is_flag=True, help="Apply nothing if any line is rejected.")
@click.option("--history", is_flag=True,
              help="The file holds histories: a patient's lines with different dates are applied in date order.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def import_cmd(gw: GatewayContext, file: Path, all_or_nothing: bool, history: bool, as_json: bool) -> None:
    """Import FILE.csv (columns patient_id;issuer;status;date;source;reference[;operator;reason]).

    Exits 9 when any line was rejected (the report lists each with its number and reason).
    """
    config = gw.config()
    w = optional_withdrawer(config)  # only withdrawals and late refusals need it; the library says so
    with open_ledger(config.home.state_db) as ledger:
        report = lib.import_csv(ledger, file, today=_today(), all_or_nothing=all_or_nothing, withdrawer=w,
                                operator=_operator(), history=history, issuers=config.consent.issuers)
    data = report.as_dict()
    if as_json:
        echo_json(data)
    else:
        _render_import(data)
    if report.rejected:
        applied = "nothing applied (--all-or-nothing)" if not report.committed else "valid lines applied"
        raise ConsentError(f"{len(report.rejected)} line(s) rejected; {applied}")


def _render_import(d: dict[str, Any]) -> None:
    click.echo(f"{d['file']}: {d['lines']} lines ({d['encoding']}, separator {d['delimiter']!r}), "
               f"{d['valid']} valid, {len(d['rejected'])} rejected")
    state = "committed" if d["committed"] else "NOT applied"
    click.echo(f"  {state}: {d['recorded']} recorded, {d['unchanged']} unchanged, "
               f"{d['withdrawals']} withdrawals ({d['requests_queued']} requests queued)")
    if d["by_status"]:
        click.echo("  recorded by status: " + ", ".join(f"{k} {v}" for k, v in d["by_status"].items()))
    if d["duplicate_lines"]:
        click.echo("  identical duplicate lines ignored: " + ", ".join(map(str, d["duplicate_lines"])))
    if d["skipped_withdrawn_lines"]:
        click.echo("  skipped, patient withdrawn (permanent): lines "
                   + ", ".join(map(str, d["skipped_withdrawn_lines"])))
    if d["ignored_columns"]:
        click.echo("  ignored columns: " + ", ".join(d["ignored_columns"]))
    for r in d["rejected"]:
        click.echo(f"  line {r['line']}: {r['reason']}")
    for r in d["not_applied"]:
        click.echo(f"  line {r['line']}: recorded, {r['reason']}", err=True)
    for r in d["already_released"]:
        click.echo(f"  line {r['line']}: {r['detail']}", err=True)


@consent.command("list")
@click.option("--status", type=click.Choice(lib.STATUSES), help="Only rows with this status.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def list_cmd(gw: GatewayContext, status: str | None, as_json: bool) -> None:
    """Registry entries and patients with eligible studies, with the identities each resolves to
    (local IDs: local admin use only)."""
    config = gw.config()
    with open_ledger(config.home.state_db) as ledger:
        rows = lib.list_patients(ledger, status, policy=config.consent, today=_today())
    data = [{"patient_id": p.patient_id, "issuer": p.issuer, "status": p.status, "date": p.effective,
             "records": p.records, "eligible_studies": p.eligible_studies, "releasable": p.releasable,
             "applies_to": p.applies_to} for p in rows]
    if as_json:
        echo_json(data)
        return
    table = Table(title=f"Consent ({config.consent.mode})")
    for col in ("patient_id", "issuer", "status", "date", "records", "studies", "releasable", "applies to"):
        table.add_column(col, no_wrap=col != "applies to")
    for d in data:
        table.add_row(str(d["patient_id"]), str(d["issuer"]), str(d["status"]), str(d["date"] or ""),
                      str(d["records"]), str(d["eligible_studies"]), "yes" if d["releasable"] else "no",
                      _applies(d["applies_to"], str(d["issuer"])))
    wide_console(min_width=120).print(table)  # never cuts a local ID, on a terminal or in a file


def _applies(res: dict[str, Any], own_issuer: str | None = None) -> str:
    """Short text of a resolution for a table cell."""
    ids = ", ".join(i["issuer"] or "(no issuer)" for i in res["identities"])
    if res["outcome"] == "ambiguous":
        return "NOT APPLIED: ambiguous (" + ", ".join(res.get("candidate_issuers", [])) + ")"
    if res["outcome"] == "all-issuers":
        return "every issuer"
    if res.get("index_issuers"):
        return "NOT APPLIED: scanned under " + ", ".join(res["index_issuers"])
    if res["unresolved"]:
        return "no match yet"
    if own_issuer is not None and [i["issuer"] for i in res["identities"]] == [own_issuer]:
        return "itself"
    return f"-> {ids}"


@consent.command("show")
@click.argument("patient_id")
@click.option("--issuer", default=None, help="IssuerOfPatientID: show that identity only (default: the Patient "
              "ID under every issuer).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def show_cmd(gw: GatewayContext, patient_id: str, issuer: str | None, as_json: bool) -> None:
    """A patient's identities, what applies to each, whether the gate releases them, and the history."""
    config = gw.config()
    with open_ledger(config.home.state_db) as ledger:
        data = lib.show(ledger, patient_id.strip(), None if issuer is None else issuer.strip(), config.consent,
                        _today())
    if as_json:
        echo_json(data)
        return
    click.echo(f"status: {data['status']} ({'releasable' if data['releasable'] else 'not releasable'} "
               f"under {config.consent.mode})")
    if not data["identities"]:
        click.echo("no scanned study holds this Patient ID yet")
    for ident in data["identities"]:
        where = ident["issuer"] or "(no issuer)"
        scanned = f"{ident['eligible_studies']} eligible studies" if ident["scanned"] else "no scanned study yet"
        click.echo(f"  issuer {where}: {ident['status']}, {'releasable' if ident['releasable'] else 'not releasable'}"
                   f" ({scanned})")
    if not data["history"]:
        click.echo("no consent recorded")
        return
    table = Table(title="History (oldest first)")
    for col in ("effective", "status", "issuer", "applies to", "recorded at", "source", "reference", "operator",
                "reason"):
        table.add_column(col)
    for r in data["history"]:
        table.add_row(r["effective"], r["status"], r["issuer"] or "(none)", _applies(r["applies_to"]), r["recorded_at"],
                      r["source"], r["reference"], r["operator"], r["reason"])
    wide_console(min_width=160).print(table)
    for r in data["history"]:  # never silently ineffective: each record that reaches no scanned patient, in words
        if r["applies_to"]["unresolved"]:
            click.echo(f"record of {r['effective']} ({r['status']}, issuer {r['issuer'] or '(none)'}): {r['describe']}")


@consent.command("coverage")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def coverage_cmd(gw: GatewayContext, as_json: bool) -> None:
    """How many eligible studies the gate releases today, and what waits for consent."""
    config = gw.config()
    with open_ledger(config.home.state_db) as ledger:
        data = lib.coverage(ledger, config.consent, _today())
    if as_json:
        echo_json(data)
    else:
        render_coverage(data)


def render_coverage(data: dict[str, Any]) -> None:
    """The human coverage summary (also used by ``scan``)."""
    mode = data["mode"] + (f", {data['delay_days']} days" if data["mode"] == "non-opposition" else "")
    click.echo(f"Consent ({mode}): {data['summary']}")
    for reason, count in data["waiting_studies"].items():
        patients = data["waiting_patients"].get(reason, 0)
        click.echo(f"  waiting: {count} studies of {patients} patients: {lib.WAITING_REASONS.get(reason, reason)}")
    for day, count in data["releasable_on"].items():
        click.echo(f"  becomes releasable on {day}: {count} studies")
    unresolved = data.get("unresolved_records", {})
    if unresolved.get("ambiguous"):
        click.echo(f"  NOT APPLIED: {unresolved['ambiguous']} consent records without an issuer are ambiguous (the "
                   "exports hold the Patient ID under several issuers): record them again with the issuer")
    if unresolved.get("issuer-mismatch"):
        click.echo(f"  warning: {unresolved['issuer-mismatch']} patients have consent recorded under an issuer the "
                   "index does not use for them (check --issuer / the issuer column)")
    if unresolved.get("no-match-yet"):
        click.echo(f"  not applied yet: {unresolved['no-match-yet']} consent records match no scanned study")
    nopid = data.get("without_patient_id", {})
    if nopid.get("eligible_instances"):
        verdict = "not released" if nopid.get("policy") != "release" else "released without a consent check"
        click.echo(f"  no Patient ID: {nopid['eligible_instances']} eligible instances of "
                   f"{nopid['eligible_studies']} studies, {verdict} ([consent] without_patient_id = "
                   f"\"{nopid.get('policy', 'hold')}\")")


COMMANDS = [consent]
