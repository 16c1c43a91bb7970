#!/usr/bin/env python3
"""Hand-made mutants of the privacy rules (issue 21) and of the security review's checks (issue
19), each with the test that must catch it.

Each mutant is a one-place edit of the code a reviewer would try (the purpose label dropped from
the HMAC input, every element of a creator kept, a tus server's claim of completion believed, a
batch decrypted from its path again after the check...). For each, the script copies the checkout to
a temporary folder, applies the edit there (the checkout is never touched), runs the named tests
and expects them to FAIL. A mutant whose tests still pass is a hole in the suite.

    .venv/bin/python tools/named_mutants.py              # all of them (5 to 15 minutes)
    .venv/bin/python tools/named_mutants.py hmac-purpose  # one, by id
    .venv/bin/python tools/named_mutants.py --list

Exit status 0 when every mutant is caught, 1 otherwise. The broad, generated campaign is
``tools/mutation_campaign.py``; these are the mutants the issue names, kept as a regression list.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    id: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "hmac-purpose",
        "purpose label removed from the HMAC input (pseudonym and date offset from one digest)",
        "sfr_gateway/deid/pseudonym.py",
        'hmac.new(secret, purpose.encode("ascii") + b"\\x00" + value.encode("utf-8"), hashlib.sha256)',
        'hmac.new(secret, value.encode("utf-8"), hashlib.sha256)',
        ("tests/test_deid_known_answers.py::test_two_purposes_never_give_related_outputs",
         "tests/test_deid_known_answers.py::test_patient_pseudonym_known_answers"),
    ),
    Mutant(
        "hmac-separator",
        "the 0x00 between purpose and value dropped",
        "sfr_gateway/deid/pseudonym.py",
        'purpose.encode("ascii") + b"\\x00" + value.encode("utf-8")',
        'purpose.encode("ascii") + value.encode("utf-8")',
        ("tests/test_deid_known_answers.py::test_the_construction_is_hmac_sha256_of_purpose_nul_value",),
    ),
    Mutant(
        "mapping-index-kind",
        "the kind dropped from the mapping's keyed index (pid, patient, pseudonym references collide)",
        "sfr_gateway/mapping/store.py",
        'hmac.new(self._index_key, kind.encode("ascii") + b"\\x00" + value.encode("utf-8"),',
        'hmac.new(self._index_key, value.encode("utf-8"),',
        ("tests/test_deid_known_answers.py::test_mapping_index_kinds_never_give_related_references",
         "tests/test_deid_known_answers.py::test_secret_and_mapping_key_fingerprints_and_indexes"),
    ),
    Mutant(
        "audit-fingerprint-purpose",
        "the audit fingerprint computed without its purpose (a plain HMAC of the value)",
        "sfr_gateway/audit/mask.py",
        '_PURPOSE = b"audit-fingerprint\\x00"',
        '_PURPOSE = b""',
        ("tests/test_deid_known_answers.py::test_audit_fingerprint_known_answers",),
    ),
    Mutant(
        "private-keep-whole-creator",
        "every element of GEMS_PARM_01 and GEMS_IDEN_01 kept",
        "sfr_gateway/deid/private.py",
        '        key = (group, creator.strip(), low)\n',
        '        key = (group, creator.strip(), low)\n'
        '        if creator.strip() in ("GEMS_PARM_01", "GEMS_IDEN_01"):\n'
        '            return PrivateDecision("k", "mutant")\n',
        ("tests/test_deid_private_elements.py::test_sample_slice_safe_element_kept_the_rest_of_its_creators_removed",
         "tests/test_deid_private_elements.py::test_every_element_byte_of_every_vendor_block"),
    ),
    Mutant(
        "private-ignore-element-byte",
        "safe list matched on (group, creator), the element byte ignored",
        "sfr_gateway/deid/private.py",
        "if self.retain_safe and key in tables.safe_private():",
        "if self.retain_safe and key[:2] in {k[:2] for k in tables.safe_private()}:",
        ("tests/test_deid_private_elements.py::test_every_element_byte_of_every_vendor_block",
         "tests/test_deid_private_elements.py::test_pydicom_files_with_vendor_blocks"),
    ),
    Mutant(
        "private-orphan-kept",
        "an element whose block has no Private Creator kept",
        "sfr_gateway/deid/private.py",
        'return PrivateDecision("d", "private element without Private Creator (removed)")',
        'return PrivateDecision("k", "mutant")',
        ("tests/test_deid_private_elements.py::test_every_element_byte_of_every_vendor_block",),
    ),
    Mutant(
        "private-kb-uid-not-remapped",
        "a private UID the TCIA knowledge base marks h kept as is",
        "sfr_gateway/deid/private.py",
        'transform = kb if kb in ("h", "o", "oi") else "k"',
        'transform = kb if kb in ("o", "oi") else "k"',
        ("tests/test_deid_private_elements.py::test_every_element_byte_of_every_vendor_block",),
    ),
    Mutant(
        "clean-given-name",
        "only the first component of a name becomes a token (the given name stays in cleaned text)",
        "sfr_gateway/deid/tokens.py",
        "            tokens.add_value(text, split_words=True)",
        "            tokens.add_value(text.split()[0] if text.split() else text, split_words=True)",
        ("tests/test_deid_properties.py::test_clean_descriptors_remove_every_name_part_from_text_they_keep",),
    ),
    Mutant(
        "truncated-at-element-boundary",
        "an image without Pixel Data (a file cut at an element boundary) released",
        "sfr_gateway/deid/files.py",
        "        if sop_class not in tables.pixel_data_iods() or any(tag in ds for tag in _OTHER_PIXELS):",
        "        if True:",
        ("tests/test_deid_inputs.py::test_truncated_files_are_never_released_at_any_cut",),
    ),
    Mutant(
        "truncated-last-element",
        "a last element shorter than its declared length accepted",
        "sfr_gateway/deid/files.py",
        "    if len(value) < last.length:",
        "    if False:",
        ("tests/test_deid_inputs.py::test_truncated_files_are_never_released_at_any_cut",),
    ),
    Mutant(
        "truncated-header",
        "bytes after the last complete element (a cut inside an element header) accepted",
        "sfr_gateway/deid/files.py",
        "    if last.value_tell + last.length < size:",
        "    if False:",
        ("tests/test_deid_inputs.py::test_truncated_files_are_never_released_at_any_cut",),
    ),
    Mutant(
        "verify-drop-public-off",
        "verify's drop_public disabled (device vocabulary stays an institution token)",
        "sfr_gateway/verify/tokens.py",
        '        """Drop institution tokens that are device vocabulary (``TOSHIBA`` as institution name)."""\n',
        '        """Drop institution tokens that are device vocabulary (``TOSHIBA`` as institution name)."""\n'
        "        return\n",
        ("tests/test_verify_tokens.py::test_drop_public_removes_institution_tokens_that_are_device_vocabulary",
         "tests/test_verify_tokens.py::test_verify_does_not_flag_a_manufacturer_that_is_also_the_institution_name"),
    ),
    Mutant(
        "verify-drop-public-not-called",
        "verify's source reading (in process) never calls drop_public",
        "sfr_gateway/verify/pool.py",
        "                progress(\"sources\", done, len(paths))\n        index.drop_public()\n",
        "                progress(\"sources\", done, len(paths))\n",
        ("tests/test_verify_tokens.py::test_verify_does_not_flag_a_manufacturer_that_is_also_the_institution_name",),
    ),
    Mutant(
        "cli-hmac-option",
        "a command takes --hmac TEXT on its command line",
        "sfr_gateway/cli/verify.py",
        '@click.option("--ignore-kind"',
        '@click.option("--hmac", help="HMAC to compare against.")\n@click.option("--ignore-kind"',
        ("tests/test_fault_leaks.py::test_no_command_takes_a_secret_on_its_command_line",),
    ),
    Mutant(
        "cli-key-option",
        "a command takes --key TEXT (a secret key) on its command line",
        "sfr_gateway/cli/verify.py",
        '@click.option("--ignore-kind"',
        '@click.option("--key", help="The site key to check outputs with.")\n@click.option("--ignore-kind"',
        ("tests/test_fault_leaks.py::test_no_command_takes_a_secret_on_its_command_line",),
    ),
    # -- issue 19: the security review's checks (transport, drop folder, secret files, central open)
    Mutant(
        "tus-stall-resets-budget",
        "a PATCH that does not advance the offset counted as progress (a stuck server held the run forever)",
        "sfr_gateway/transport/tus.py",
        "        if new_offset == offset:  # a server",
        "        if False:  # a server",
        ("tests/test_transport_liars.py::test_a_server_that_never_advances_the_offset_exhausts_the_retry_budget",
         "tests/test_transport_liars.py::test_upload_against_a_stuck_server_ends_with_exit_10"),
    ),
    Mutant(
        "tus-claim-beyond-sent",
        "a HEAD offset beyond what this gateway sent believed (a server's claim of completion is delivery)",
        "sfr_gateway/transport/tus.py",
        "    if offset > sent:",
        "    if False:",
        ("tests/test_transport_liars.py::test_completion_claimed_by_head_alone_is_not_delivery",
         "tests/test_transport_liars.py::test_upload_keeps_the_local_batch_when_the_server_only_claims_completion",
         "tests/test_transport_liars.py::test_a_head_offset_beyond_what_was_sent_is_refused"),
    ),
    Mutant(
        "tus-head-backwards",
        "a HEAD offset below what the server had confirmed accepted (acknowledged bytes lost in silence)",
        "sfr_gateway/transport/tus.py",
        "    if offset < confirmed:",
        "    if False:",
        ("tests/test_transport_liars.py::test_a_head_offset_below_what_the_server_confirmed_is_refused",),
    ),
    Mutant(
        "tus-patch-backwards",
        "a PATCH answer that goes backwards accepted",
        "sfr_gateway/transport/tus.py",
        "        if new_offset < offset:",
        "        if False:",
        ("tests/test_transport_liars.py::test_a_server_that_goes_backwards_is_refused",),
    ),
    Mutant(
        "tus-sent-not-recorded",
        "how far an upload was sent not recorded before the bytes leave",
        "sfr_gateway/transport/state.py",
        "        sql.note_sent(self.ledger, self.destination, batch_id, _part(part), upto)",
        "        pass",
        ("tests/test_transport_liars.py::test_completion_after_our_final_patch_is_confirmed_by_head",),
    ),
    Mutant(
        "upload-ignores-keep-sent",
        "[batch] keep_sent ignored: a delivered batch always removed",
        "sfr_gateway/run/upload.py",
        "if not config.keep_sent:",
        "if True:",
        ("tests/test_transport_liars.py::test_a_confirmed_delivery_removes_the_local_batch_unless_keep_sent",),
    ),
    Mutant(
        "drop-part-follows-links",
        "the drop folder's .part opened without O_EXCL|O_NOFOLLOW (a planted symlink written through)",
        "sfr_gateway/transport/filedrop.py",
        "os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |",
        "os.O_WRONLY | os.O_CREAT | os.O_TRUNC |",
        ("tests/test_transport_filedrop.py::test_a_symlink_planted_at_the_part_name_is_never_written_through",),
    ),
    Mutant(
        "drop-final-replaces",
        "the drop folder's final name placed by os.replace (a file that appeared meanwhile overwritten)",
        "sfr_gateway/transport/filedrop.py",
        "        os.link(part, target)\n        return True",
        "        os.replace(part, target)\n        return True",
        ("tests/test_transport_filedrop.py::test_a_file_appearing_under_the_final_name_meanwhile_is_never_replaced",),
    ),
    Mutant(
        "secret-file-mode-unchecked",
        "a secret file (token, age identity) read whatever its mode",
        "sfr_gateway/keys/files.py",
        "            _exposed(st.st_mode, path, what)\n",
        "\n",
        ("tests/test_secret_files.py::test_bearer_token_file_readable_by_others_is_refused",
         "tests/test_secret_files.py::test_central_identity_readable_by_others_is_refused",
         "tests/test_secret_files.py::test_custodian_identity_readable_by_others_is_refused_on_restore"),
    ),
    Mutant(
        "tls-client-key-unchecked",
        "the [transport] TLS client key used whatever its mode",
        "sfr_gateway/transport/base.py",
        '            check_secret_file(key, "transport.client_key")',
        "            pass",
        ("tests/test_secret_files.py::test_tls_client_key_readable_by_others_is_refused",),
    ),
    Mutant(
        "central-identity-unchecked",
        "the central host's age identity read without the secret-file check",
        "sfr_gateway/central/identity.py",
        'read_secret_file(path, "identity file")',
        'open(path, "rb").read()',
        ("tests/test_secret_files.py::test_central_identity_readable_by_others_is_refused",),
    ),
    Mutant(
        "key-archive-unchecked",
        "keys/archive/ left out of the key-folder check",
        "sfr_gateway/keys/files.py",
        '    folders = [home.keys, *(p for p in [home.keys / "archive"] if p.is_dir() and not p.is_symlink())]',
        "    folders = [home.keys]",
        ("tests/test_secret_files.py::test_an_archived_key_readable_by_others_is_refused",),
    ),
    Mutant(
        "profile-reserved-purpose",
        "a profile pseudonym purpose equal to a reserved HMAC domain (uid, date-offset...) accepted",
        "sfr_gateway/deid/profile.py",
        "    if purpose in RESERVED_PURPOSES:",
        "    if False:",
        ("tests/test_deid_profile.py::test_invalid_profiles_fail_at_load_with_a_fix",),
    ),
    Mutant(
        "central-any-registered-key",
        "a batch opened with any registered key, whatever site it claims",
        "sfr_gateway/central/opener.py",
        "    keys = registry.keys_for(site)\n",
        "    keys = [e.key for e in registry]\n",
        ("tests/test_central_hardening.py::test_a_batch_signed_by_another_registered_site_is_refused",),
    ),
    Mutant(
        "central-small-order-key",
        "a site key registered without the Ed25519 point check (a small-order key verifies anything)",
        "sfr_gateway/central/sites.py",
        "    if not ed25519_point_ok(key.key):",
        "    if False:",
        ("tests/test_central_hardening.py::test_unusable_keys_are_refused_at_add",),
    ),
    Mutant(
        "central-registry-writable",
        "a site registry (or its folder) that others can write trusted",
        "sfr_gateway/central/home.py",
        "            if stat.S_IMODE(mode) & 0o022:",
        "            if False:",
        ("tests/test_central_hardening.py::test_a_registry_others_can_write_is_refused",),
    ),
    Mutant(
        "central-file-name-unchecked",
        "the trusted comment's file name not compared with the batch's",
        "sfr_gateway/central/opener.py",
        '        if fields.get("file") != batch.name:',
        "        if False:",
        ("tests/test_central_hardening.py::test_the_signed_file_name_must_be_the_batch_name",),
    ),
    Mutant(
        "central-sha256-unchecked",
        "the trusted comment's SHA-256 not compared with the batch's",
        "sfr_gateway/central/opener.py",
        '        if fields.get("sha256") != sha_hex:',
        "        if False:",
        ("tests/test_central_open.py::test_signed_sha256_must_match",),
    ),
    Mutant(
        "central-legacy-ed",
        "a legacy (Ed, not prehashed) signature accepted by central open",
        "sfr_gateway/central/opener.py",
        "    if sig.algorithm != ALG_PREHASHED:",
        "    if False:",
        ("tests/test_central_hardening.py::test_a_legacy_Ed_signature_is_refused",),
    ),
    Mutant(
        "central-decrypts-the-original",
        "the batch decrypted from its path again, not from the verified private copy",
        "sfr_gateway/central/opener.py",
        '        with open(copy, "rb") as fh:',
        '        with open(batch, "rb") as fh:',
        ("tests/test_central_hardening.py::test_a_swap_between_the_check_and_the_decryption_is_never_decrypted",),
    ),
    Mutant(
        "central-limits-unchecked",
        "[open] max_files and max_unpacked_bytes not applied",
        "sfr_gateway/central/opener.py",
        "    _check_limits(len(expected), declared, batch_size, limits)\n",
        "\n",
        ("tests/test_central_hardening.py::test_an_oversized_manifest_is_refused_before_unpacking",),
    ),
    Mutant(
        "central-ratio-unchecked",
        "[open] max_ratio not applied (a decompression bomb unpacks)",
        "sfr_gateway/central/opener.py",
        "    if total > RATIO_FLOOR and total > limits.max_ratio * batch_size:",
        "    if False:",
        ("tests/test_central_hardening.py::test_a_decompression_bomb_is_refused_by_the_ratio_limit",),
    ),
    Mutant(
        "central-no-room-for-files",
        "no free-space check for the files the manifest declares",
        "sfr_gateway/central/opener.py",
        '    _need_space(dest, declared + len(raw), limits, f"batch {batch_id}")\n',
        "\n",
        ("tests/test_central_hardening.py::test_files_larger_than_the_free_space_are_refused_before_the_first_is_written",),
    ),
    Mutant(
        "central-no-room-for-copy",
        "no free-space check before the private copy",
        "sfr_gateway/central/opener.py",
        '    _need_space(output, batch_size, limits, f"the private copy of {batch.name}")\n',
        "\n",
        ("tests/test_central_hardening.py::test_no_room_is_a_storage_error_before_anything_is_written",),
    ),
    Mutant(
        "central-manifest-size-unchecked",
        "a manifest.json over 64 MiB read (into memory) instead of refused from its header",
        "sfr_gateway/central/opener.py",
        "    if first.size > MAX_MANIFEST_BYTES:",
        "    if False:",
        ("tests/test_central_hardening.py::test_a_manifest_larger_than_64_MiB_is_refused_before_it_is_read",),
    ),
    Mutant(
        "central-stream-uncapped",
        "the decompressed stream not capped at what the manifest declares",
        "sfr_gateway/central/opener.py",
        "        if self.total > self.cap:",
        "        if False:",
        ("tests/test_central_hardening.py::test_zero_padding_after_the_tar_cannot_grow_without_bound",),
    ),
    Mutant(
        "central-trailing-data",
        "data after the end of the tar archive ignored",
        "sfr_gateway/central/opener.py",
        "        if block.count(0) != len(block):",
        "        if False:",
        ("tests/test_central_hardening.py::test_every_malformed_member_is_an_integrity_error",),
    ),
    Mutant(
        "central-bad-name-exit-1",
        "a member name the file system refuses (manifest.json/x, too long) left as an OSError (exit 1)",
        "sfr_gateway/central/opener.py",
        "        if exc.errno in _BAD_NAME:",
        "        if False:",
        ("tests/test_central_hardening.py::test_every_malformed_member_is_an_integrity_error",),
    ),
    Mutant(
        "central-copy-readable",
        "the private copy of the batch created 0644 (others could read, and with the folder, change it)",
        "sfr_gateway/central/opener.py",
        "os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)",
        "os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)",
        ("tests/test_central_hardening.py::test_a_swap_between_the_check_and_the_decryption_is_never_decrypted",),
    ),
)

_COPY = ("sfr_gateway", "tests", "profiles", "pyproject.toml", "setup.cfg", "setup.py")


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "node_modules", ".hypothesis", "*.pyc")
    for name in _COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore, symlinks=True)
        elif src.exists():
            shutil.copy2(src, dest / name)
    # the installed package maps sfr_gateway.profiles to profiles/: the copy carries it in place
    shutil.copytree(ROOT / "profiles", dest / "sfr_gateway" / "profiles", ignore=ignore)
    modules = ROOT / "tests" / "tus-server" / "node_modules"
    if modules.exists():
        (dest / "tests" / "tus-server" / "node_modules").symlink_to(modules)


def run(mutant: Mutant, python: str) -> tuple[bool, float, str]:
    """Apply ``mutant`` in a copy and run its tests: (caught, seconds, last output line)."""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.id}-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        target = work / mutant.path
        text = target.read_text(encoding="utf-8")
        if text.count(mutant.old) != 1:
            raise SystemExit(f"{mutant.id}: the text to mutate occurs {text.count(mutant.old)} times in {mutant.path}"
                             " (the code moved: update tools/named_mutants.py)")
        target.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        where = subprocess.run([python, "-c", "import sfr_gateway.deid.profile as p, sfr_gateway.profiles as q;"
                                " print(p.__file__); print(q.__path__[0])"],
                               cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
        if not all(Path(w).resolve().is_relative_to(work.resolve()) for w in where):
            raise SystemExit(f"the copy is not the code under test ({where}): is sfr_gateway installed non-editable?")
        start = time.monotonic()
        proc = subprocess.run([python, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider",
                               *mutant.tests], cwd=work, env=env, capture_output=True, text=True, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        return proc.returncode == 1, time.monotonic() - start, lines[-1] if lines else proc.stderr[-200:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", nargs="*", help="mutant ids (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.ids or m.id in args.ids]
    if args.list:
        for m in chosen:
            print(f"{m.id:32s} {m.what}\n{'':32s} {m.path}\n" + "".join(f"{'':34s}{t}\n" for t in m.tests))
        return 0
    missed = 0
    for m in chosen:
        caught, seconds, last = run(m, sys.executable)
        missed += not caught
        print(f"{'CAUGHT' if caught else 'MISSED'}  {m.id:32s} {seconds:5.1f}s  {last}", flush=True)
    print(f"{len(chosen) - missed} of {len(chosen)} named mutants caught")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
