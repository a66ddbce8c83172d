"""Passwords, the signing key and bearer tokens on disk, and the commands that manage them."""

import json
import os
import stat
import subprocess
import sys

import pytest

from hermes_web.security import auth
from tests.support import ROOT


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_password_hash_is_salted_slow_scrypt_and_verifies_only_its_password():
    first = auth.hash_password("correct horse battery")
    second = auth.hash_password("correct horse battery")
    kind, n, r, p, salt, digest = first.split("$")
    assert (kind, int(n), int(r), int(p)) == ("scrypt", auth.SCRYPT_N, auth.SCRYPT_R, auth.SCRYPT_P)
    assert first != second  # salted
    assert "correct" not in first
    assert auth.verify_password("correct horse battery", first)
    assert auth.verify_password("correct horse battery", second)
    assert not auth.verify_password("correct horse batterY", first)
    assert not auth.verify_password("", first)


@pytest.mark.parametrize("stored", ["", "scrypt", "plain$1$2$3$a$b", "scrypt$x$8$1$AAAA$AAAA",
                                    "scrypt$32768$8$1$%%%$AAAA", "scrypt$3$8$1$AAAA$AAAA"])
def test_a_malformed_hash_never_verifies(stored):
    assert not auth.verify_password("anything at all", stored)


def test_hashes_record_their_parameters_so_older_costs_still_verify():
    cheap = auth.hash_password("a password here", n=2**10)
    assert cheap.split("$")[1] == "1024"
    assert auth.verify_password("a password here", cheap)


def test_set_password_stores_only_the_hash_in_a_private_file(tmp_path):
    with pytest.raises(auth.AuthError):
        auth.set_password(tmp_path, "short")
    assert auth.stored_password_hash(tmp_path) is None
    auth.set_password(tmp_path, "a long enough password")
    path = auth.password_path(tmp_path)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert "long enough" not in path.read_text()
    assert auth.verify_password("a long enough password", auth.stored_password_hash(tmp_path))


def test_the_signing_key_is_made_once_and_kept(tmp_path):
    key = auth.signing_key(tmp_path)
    assert len(key) == auth.KEY_BYTES
    assert mode(auth.signing_key_path(tmp_path)) == 0o600
    assert auth.signing_key(tmp_path) == key
    auth.signing_key_path(tmp_path).write_bytes(b"half")  # a crash between create and write
    assert len(auth.signing_key(tmp_path)) == auth.KEY_BYTES


def test_tokens_are_shown_once_and_stored_hashed(tmp_path):
    token = auth.create_token(tmp_path, "backup script")
    assert token.startswith(auth.TOKEN_PREFIX) and len(token) == len(auth.TOKEN_PREFIX) + 43
    stored = auth.tokens_path(tmp_path).read_text()
    assert token not in stored and token[len(auth.TOKEN_PREFIX):] not in stored
    assert mode(auth.tokens_path(tmp_path)) == 0o600
    listed = auth.list_tokens(tmp_path)
    assert [item["name"] for item in listed] == ["backup script"]
    assert listed[0]["sha256"] == auth.token_hash(token)
    with pytest.raises(auth.AuthError):
        auth.create_token(tmp_path, "backup script")
    for bad in ("", " padded", "x" * 65, "tab\there"):
        with pytest.raises(auth.AuthError):
            auth.create_token(tmp_path, bad)
    assert auth.revoke_token(tmp_path, "backup script")
    assert not auth.revoke_token(tmp_path, "backup script")
    assert auth.list_tokens(tmp_path) == []


def test_logged_out_cookies_are_remembered_until_they_expire(tmp_path):
    auth.revoke_login(tmp_path, "old", 1.0)  # already expired: dropped at the next write
    auth.revoke_login(tmp_path, "recent", 4e9)
    assert auth.read_revoked(tmp_path) == {"recent": 4e9}
    auth.revoked_path(tmp_path).write_text("not json")
    assert auth.read_revoked(tmp_path) == {}


def cli(*args, stdin: str = "", env=None):
    return subprocess.run([sys.executable, "-m", "hermes_web", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_the_commands_set_a_password_and_manage_tokens(tmp_path):
    data_dir = str(tmp_path / "var")
    done = cli("set-password", "--data-dir", data_dir, stdin="a long enough password\n")
    assert done.returncode == 0, done.stderr
    assert "a long enough password" not in done.stdout + done.stderr
    assert auth.verify_password("a long enough password", auth.stored_password_hash(data_dir))
    refused = cli("set-password", "--data-dir", data_dir, stdin="short\n")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    created = cli("token", "create", "phone", "--data-dir", data_dir)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("hwt_") and token not in created.stderr
    listed = cli("token", "list", "--data-dir", data_dir)
    assert listed.returncode == 0 and listed.stdout.startswith("phone\tcreated ") and token not in listed.stdout
    assert cli("token", "create", "phone", "--data-dir", data_dir).returncode == 2
    assert cli("token", "revoke", "phone", "--data-dir", data_dir).returncode == 0
    missing = cli("token", "revoke", "phone", "--data-dir", data_dir)
    assert missing.returncode == 1 and "no token named 'phone'" in missing.stderr
    assert json.loads(auth.tokens_path(data_dir).read_text()) == {"tokens": []}
