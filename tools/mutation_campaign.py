#!/usr/bin/env python3
"""Mutation campaign over the privacy and crypto code (issue 21), with mutmut 2.

Each target (one package or module) is mutated in its own copy of the checkout under
``benchmarks/out/mutation/TARGET`` (the checkout is never touched), and each mutant is tested
by the target's own test files only. Survivors are compared with ``tests/mutation-equivalents.md``
(the mutants judged equivalent, each with its reason): a survivor not listed there is a missing
test. Results go to ``benchmarks/results/mutation.json`` and a Markdown table to stdout.

    nice .venv/bin/python tools/mutation_campaign.py --list
    nice .venv/bin/python tools/mutation_campaign.py deid/pseudonym deid/private    # some targets
    nice .venv/bin/python tools/mutation_campaign.py --all                          # all (hours)
    .venv/bin/python tools/mutation_campaign.py --report                            # table only
    .venv/bin/python tools/mutation_campaign.py --survivors deid/pseudonym          # their diffs

Why mutmut 2 (2.5.1) and not mutmut 3: mutmut 3 mutates only undecorated function bodies,
so it never mutates ``_digest`` (``@lru_cache``) nor a module constant such as the audit
fingerprint's purpose; mutmut 2 mutates every line. It is installed on first use into its own
virtual environment, ``.venv-mutmut`` (not a test dependency: CI runs the tests, not this).

A target may name ``functions`` (``name`` or ``Class.name``): then only their lines (decorators
and ``def`` line included) are mutated, through mutmut's ``--use-patch-file`` (a patch that
"adds" those lines; hence ``mutmut[patch]``). Each target's tests are listed killers first
(the quickest test that catches most mutants), and pytest stops at the first failure.

After a layout change, update the paths in ``TARGETS``: nothing else names them.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "out" / "mutation"
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"
EQUIVALENTS = ROOT / "tests" / "mutation-equivalents.md"
TOOL_VENV = Path(os.environ.get("SFR_MUTMUT_VENV", ROOT / ".venv-mutmut"))
MUTMUT = "mutmut[patch]==2.5.1"  # the extra: whatthepatch, for --use-patch-file


@dataclass(frozen=True)
class Target:
    name: str
    mutate: tuple[str, ...]  # files or folders, relative to the checkout
    tests: tuple[str, ...]  # the test files that exercise them, killers first
    note: str = ""
    functions: tuple[str, ...] = ()  # only these functions' lines (all lines when empty)


#: Every path the campaign knows, in one place (update after a layout change).
TARGETS: tuple[Target, ...] = (
    Target("deid/pseudonym", ("sfr_gateway/deid/pseudonym.py",),
           ("tests/test_deid_known_answers.py", "tests/test_deid_profile.py")),
    Target("deid/private", ("sfr_gateway/deid/private.py",),
           ("tests/test_deid_private_elements.py", "tests/test_deid_profile.py"), "the private-tag rules"),
    Target("consent/gate", ("sfr_gateway/consent/gate.py", "sfr_gateway/consent/identity.py",
                            "sfr_gateway/consent/policy.py", "sfr_gateway/consent/registry.py"),
           ("tests/test_consent_decisions.py", "tests/test_consent_identity_rules.py", "tests/test_consent_gate.py",
            "tests/test_consent_identity.py",
            "tests/test_consent_properties.py", "tests/test_consent_registry.py"),
           "the gate's decisions (the run's gate, the packaging and upload re-checks, pull's identities) "
           "and the identity and status rules they apply",
           functions=("decide", "Gate.releasable", "Gate.waiting", "Gate.identities_of", "decide_studies", "gate",
                      "releasable_identities", "Resolution.unresolved", "Registry.__init__", "Registry.load",
                      "Registry.restriction_scope", "Registry._no_issuer_target", "Registry.identities_of",
                      "Registry.resolve", "Registry.restriction_targets", "Registry._applies", "Registry._target_of",
                      "Registry.add", "Registry.standing", "Registry.applying_records", "check_policy",
                      "classify", "release_basis", "study_release_basis", "batch_releasable", "is_releasable",
                      "releasable_studies")),
    Target("crypto/sign", ("sfr_gateway/crypto/sign.py",),
           ("tests/test_crypto_sign.py", "tests/test_crypto_interop.py"), "minisign: the whole module"),
    Target("crypto/age", ("sfr_gateway/crypto/age.py", "sfr_gateway/crypto/agekeys.py"),
           ("tests/test_crypto_age_refusals.py", "tests/test_crypto_cctv.py", "tests/test_crypto_age.py",
            "tests/test_crypto_interop.py"),
           "age decryption: header, stanza and STREAM parsing and checking, the identity it opens with",
           functions=("_hkdf", "_unwrap_with", "_header_mac", "chunk_nonce", "_Source.__init__", "_Source._fill",
                      "_Source.readline", "_Source.read", "_Source.at_eof", "_parse_header", "Decryptor.__init__",
                      "Decryptor._open", "Decryptor._next_chunk", "Decryptor.readinto", "decrypt_stream",
                      "decrypt_bytes", "b64decode", "Identity.__post_init__", "Identity.parse", "Identity.recipient",
                      "parse_identities")),
    Target("deid/dates", ("sfr_gateway/deid/dates.py",),
           ("tests/test_deid_profile.py", "tests/test_deid_engine_rules.py", "tests/test_deid_known_answers.py")),
    Target("deid/text", ("sfr_gateway/deid/text.py", "sfr_gateway/deid/tokens.py"),
           ("tests/test_deid_clean_text.py", "tests/test_deid_profile.py")),
    Target("deid/engine", ("sfr_gateway/deid/engine.py", "sfr_gateway/deid/values.py", "sfr_gateway/deid/plan.py",
                           "sfr_gateway/deid/rules.py", "sfr_gateway/deid/tables.py"),
           ("tests/test_deid_table.py", "tests/test_deid_engine_rules.py", "tests/test_deid_rules_named.py",
            "tests/test_deid_private_elements.py")),
    Target("deid/files", ("sfr_gateway/deid/files.py", "sfr_gateway/deid/rawread.py", "sfr_gateway/deid/rawwrite.py"),
           ("tests/test_deid_inputs.py", "tests/test_perf_rawwrite.py", "tests/test_perf_split.py")),
    Target("deid/profile", ("sfr_gateway/deid/profile.py", "sfr_gateway/deid/describe.py"),
           ("tests/test_deid_profile.py", "tests/test_deid_rules_named.py")),
    Target("deid/pixels", ("sfr_gateway/deid/pixels.py", "sfr_gateway/deid/sameness.py"),
           ("tests/test_deid_engine_rules.py", "tests/test_deid_duplicates.py", "tests/test_package_frames.py")),
)
#: Targets whose every survivor must be explained (issue 21's acceptance).
MUST_EXPLAIN = ("deid/pseudonym", "deid/private", "consent/gate", "crypto/sign", "crypto/age")

_COPY = ("sfr_gateway", "tests", "profiles", "pyproject.toml", "setup.cfg", "setup.py")
_STATUS = {"ok_killed": "killed", "bad_survived": "survived", "bad_timeout": "timeout",
           "ok_suspicious": "suspicious", "skipped": "skipped", "untested": "untested"}


def _mutmut() -> Path:
    exe = TOOL_VENV / "bin" / "mutmut"
    python = TOOL_VENV / "bin" / "python"
    if not exe.exists() or subprocess.run([str(python), "-c", "import whatthepatch"], capture_output=True,
                                          check=False).returncode:
        print(f"installing {MUTMUT} into {TOOL_VENV}", file=sys.stderr)
        if not python.exists():
            venv.create(TOOL_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", MUTMUT], check=True)
    return exe


def _copy(dest: Path) -> None:
    """A fresh copy of the code and tests (kept between runs: mutmut resumes from its cache)."""
    ignore = shutil.ignore_patterns("__pycache__", "node_modules", ".hypothesis", "*.pyc")
    cache = dest / ".mutmut-cache"
    saved = cache.read_bytes() if cache.exists() else None
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in _COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / name)
    shutil.copytree(ROOT / "profiles", dest / "sfr_gateway" / "profiles", ignore=ignore)  # as installed
    if saved is not None:
        cache.write_bytes(saved)


def function_lines(path: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """(first, last) line of each named function of a module (``name`` or ``Class.name``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, tuple[int, int]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found[prefix + node.name] = (first, node.end_lineno or node.lineno)

    visit(tree.body, "")
    return [found[n] for n in names if n in found]


def write_patch(target: Target, dest: Path) -> Path | None:
    """A patch that "adds" the lines of the target's functions (None: mutate every line)."""
    if not target.functions:
        return None
    known: set[str] = set()
    out = []
    for rel in target.mutate:
        text = (ROOT / rel).read_text(encoding="utf-8").splitlines()
        spans = function_lines(ROOT / rel, target.functions)
        known |= {n for n in target.functions if function_lines(ROOT / rel, (n,))}
        if not spans:
            continue
        out += [f"diff --git {rel} {rel}", f"--- {rel}", f"+++ {rel}"]  # without the first line whatthepatch
        # reads the next files' hunks as the first file's
        for first, last in sorted(spans):
            out.append(f"@@ -0,0 +{first},{last - first + 1} @@")
            out += ["+" + line for line in text[first - 1 : last]]
    missing = sorted(set(target.functions) - known)
    if missing:
        raise SystemExit(f"{target.name}: no such function(s) {missing} in {target.mutate}")
    patch = dest.parent / f"{dest.name}.patch"
    patch.write_text("\n".join(out) + "\n", encoding="utf-8")
    return patch


# mutmut 2.5.1 replaces its test worker process every 100 mutants; on this machine the new worker
# sometimes dies at once and the run then waits for ever (seen three times on crypto/age and
# consent/gate). One worker for the whole run avoids it.
_NO_CYCLING = ("import sys, mutmut; mutmut.CYCLE_PROCESS_AFTER = 10**9; sys.argv[0] = 'mutmut'; "
               "from mutmut.__main__ import climain; sys.exit(climain())")


def run_target(target: Target) -> None:
    dest = WORK / target.name.replace("/", "-")
    _copy(dest)
    patch = write_patch(target, dest)
    runner = " ".join([f"'{sys.executable}'", "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                       *target.tests])
    env = {**os.environ, "PYTHONPATH": str(dest), "PYTHONDONTWRITEBYTECODE": "1", "HYPOTHESIS_PROFILE": "default"}
    start = time.monotonic()
    proc = subprocess.run([str(_mutmut().parent / "python"), "-c", _NO_CYCLING, "run",
                           "--paths-to-mutate", ",".join(target.mutate), "--tests-dir", "tests",
                           "--runner", runner, "--no-progress", "--simple-output",
                           *(["--use-patch-file", str(patch)] if patch else [])],
                          cwd=dest, env=env, capture_output=True, text=True, check=False)
    if proc.returncode & 1:
        raise SystemExit(f"{target.name}: mutmut failed\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print(f"{target.name}: {time.monotonic() - start:.0f} s", file=sys.stderr)


def _mutants(target: Target) -> list[dict[str, object]]:
    """Every mutant of the target's cache: id, file, line number, original and mutated line, status.
    For a target of named functions, only the mutants inside them (the cache may hold others
    from an earlier definition of the target)."""
    cache = WORK / target.name.replace("/", "-") / ".mutmut-cache"
    if not cache.exists():
        return []
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT Mutant.id, SourceFile.filename, Line.line_number, Line.line, Mutant.\"index\", "
                          "Mutant.status FROM Mutant JOIN Line ON Mutant.line = Line.id "
                          "JOIN SourceFile ON Line.sourcefile = SourceFile.id ORDER BY Mutant.id").fetchall()
    spans = {rel: function_lines(ROOT / rel, target.functions) for rel in target.mutate} if target.functions else {}
    return [{"id": r[0], "file": r[1], "line_number": r[2] + 1, "line": r[3], "index": r[4],
             "status": _STATUS.get(r[5], r[5])} for r in rows
            if r[1] in target.mutate and (not spans or any(a <= r[2] + 1 <= b for a, b in spans[r[1]]))]


def _diff(target: Target, mutant_id: int) -> str:
    dest = WORK / target.name.replace("/", "-")
    proc = subprocess.run([str(_mutmut()), "show", str(mutant_id)], cwd=dest, capture_output=True, text=True,
                          check=False)
    return proc.stdout


RECHECK_TIMEOUT = 180  # seconds: a mutant that makes the tests loop is killed (as mutmut's timeout does)


def recheck(target: Target, diff: str) -> str | None:
    """Apply a mutant's diff to a fresh copy and run the target's tests: ``killed`` (they fail),
    ``timeout``, ``survived``, or None when the diff no longer applies.

    mutmut 2 counts any exit status but 1 as passing (a crash, an interrupted run), so every
    unexplained survivor is run once more, alone; so is every mutant it did not run (mutmut 2.5.1
    skips decorator removals, and its worker process sometimes dies on this machine, leaving the
    run waiting: what it left untested is tested here)."""
    scratch = WORK / "recheck"
    _copy(scratch)
    if subprocess.run(["patch", "-p0", "-s", "-d", str(scratch)], input=diff, text=True, check=False).returncode:
        return None
    env = {**os.environ, "PYTHONPATH": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                             *target.tests], cwd=scratch, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_limit_memory)
    try:
        returncode = proc.wait(timeout=RECHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        return "timeout"
    if returncode in (4, 5):  # pytest's usage error, no tests collected: the runner is wrong, not the mutant
        return None
    # 1: a test failed; any other failure (a MemoryError at the limit, a crash) is a killed mutant too
    return "survived" if returncode == 0 else "killed"


def _limit_memory() -> None:
    """A mutant that loops while buffering (e.g. a read position that never advances) must not
    take the shared machine's memory: 4 GiB of address space, then MemoryError."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def _mutated_line(diff: str) -> str:
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return added[0].strip() if added else ""


def equivalents() -> list[tuple[str, str, str, str]]:
    """(file, original line, mutated line, reason) from tests/mutation-equivalents.md's tables."""
    out = []
    for line in EQUIVALENTS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))] if line.startswith("|") else []
        if len(cells) == 4 and cells[0].startswith("sfr_gateway/"):
            out.append((cells[0], _unquote(cells[1]), _unquote(cells[2]), cells[3]))
    return out


def _unquote(cell: str) -> str:
    return re.sub(r"^`|`$", "", cell).replace("\\|", "|")


def _record(target: Target, mutant_id: int, verdict: str | None) -> None:
    """Keep a verdict on a mutant mutmut did not run in its cache (the next report reads it)."""
    status = {"killed": "ok_killed", "timeout": "bad_timeout", "survived": "bad_survived"}.get(verdict or "")
    if status:
        with sqlite3.connect(WORK / target.name.replace("/", "-") / ".mutmut-cache") as db:
            db.execute("UPDATE Mutant SET status = ? WHERE id = ?", (status, mutant_id))


def summarise(target: Target, with_diffs: bool = False) -> dict[str, object]:
    mutants = _mutants(target)
    known = equivalents()
    counts = {k: 0 for k in ("generated", "killed", "survived", "equivalent", "unexplained", "timeout", "untested",
                             "killed_on_recheck")}
    unexplained = []
    for m in mutants:
        counts["generated"] += 1
        status = str(m["status"])
        if status in ("killed", "timeout", "suspicious"):
            counts["killed" if status != "timeout" else "timeout"] += 1
            continue
        diff = _diff(target, int(m["id"]))  # type: ignore[call-overload]
        after = _mutated_line(diff)
        untested = status in ("untested", "skipped")
        if untested:  # mutmut did not run it: applied and tested here, like a survivor
            verdict = recheck(target, diff)
            _record(target, int(m["id"]), verdict)  # type: ignore[call-overload]
            if verdict is None:
                counts["untested"] += 1
                continue
            if verdict != "survived":
                counts["killed" if verdict == "killed" else "timeout"] += 1
                counts["killed_on_recheck"] += 1
                continue
        counts["survived"] += 1
        if any(f == m["file"] and o == str(m["line"]).strip() and a == after for f, o, a, _ in known):
            counts["equivalent"] += 1
            continue
        verdict = "survived" if untested else recheck(target, diff)
        if verdict in ("killed", "timeout"):
            counts["survived"] -= 1
            counts["killed" if verdict == "killed" else "timeout"] += 1
            counts["killed_on_recheck"] += 1
        else:
            counts["unexplained"] += 1
            unexplained.append({"file": m["file"], "line": m["line_number"], "original": str(m["line"]).strip(),
                                "mutant": after, **({"diff": diff} if with_diffs else {})})
    return {"target": target.name, "mutated": list(target.mutate), "tests": list(target.tests),
            "functions": list(target.functions), **counts,
            "unexplained_mutants": unexplained}


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| package | mutants | not run yet | killed | survived | equivalent | unexplained | timeout | score |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        gen, killed, timeout, eq = (int(r[k]) for k in ("generated", "killed", "timeout", "equivalent"))  # type: ignore[call-overload]
        denominator = gen - eq - int(r["untested"])  # type: ignore[call-overload]
        score = f"{100 * (killed + timeout) / denominator:.1f} %" if denominator else "-"
        lines.append(f"| {r['target']} | {gen} | {r['untested']} | {killed} | {r['survived']} | {eq} | {r['unexplained']} "
                     f"| {timeout} | {score} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="target names (see --list)")
    parser.add_argument("--all", action="store_true", help="run every target")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--report", action="store_true", help="only summarise what was run")
    parser.add_argument("--survivors", action="store_true", help="print the unexplained survivors' diffs")
    args = parser.parse_args()
    by_name = {t.name: t for t in TARGETS}
    if args.list:
        for t in TARGETS:
            print(f"{t.name:16s} {' '.join(t.mutate)}\n{'':16s} tests: {' '.join(t.tests)}")
            if t.functions:
                print(f"{'':16s} functions: {' '.join(t.functions)}")
        return 0
    unknown = [n for n in args.targets if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown target(s) {unknown}; see --list")
    chosen = list(TARGETS) if args.all or not args.targets else [by_name[n] for n in args.targets]
    if not (args.report or args.survivors):
        for target in chosen:
            run_target(target)
    rows = [summarise(t, with_diffs=args.survivors) for t in chosen]
    rows = [r for r in rows if r["generated"]]
    if args.survivors:
        for r in rows:
            for m in r["unexplained_mutants"]:  # type: ignore[attr-defined]
                print(f"--- {r['target']}: {m['file']}:{m['line']}\n{m['diff']}")
        return 0
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous.update({r["target"]: r for r in rows})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(previous, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(table([previous[t.name] for t in TARGETS if t.name in previous]))
    bad = [r["target"] for r in rows if r["target"] in MUST_EXPLAIN and r["unexplained"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
