"""The demo's Bitbucket keys (`prgate up` without a GitHub App): made once, kept in the data dir, 0600."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.fernet import Fernet

from prgate.embedded import read_env_file
from prgate.supervisor import DEMO_SECRETS, configure_demo, demo_bitbucket_secrets


def test_made_once_then_kept_and_a_lost_one_made_again(tmp_path: Path) -> None:
    first = demo_bitbucket_secrets(tmp_path)
    path = tmp_path / DEMO_SECRETS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_env_file(path) == first
    Fernet(first["PRGATE_ENCRYPTION_KEY"].encode())  # a key the backend's vault accepts
    assert demo_bitbucket_secrets(tmp_path) == first

    # A value gone from the file: made again, the other kept.
    path.write_text(f"PRGATE_ENCRYPTION_KEY={first['PRGATE_ENCRYPTION_KEY']}\n")
    again = demo_bitbucket_secrets(tmp_path)
    assert again["PRGATE_ENCRYPTION_KEY"] == first["PRGATE_ENCRYPTION_KEY"]
    assert again["BITBUCKET_WEBHOOK_SECRET"]
    assert read_env_file(path) == again


def test_the_demo_stack_reads_them_unless_the_shell_sets_its_own(tmp_path: Path) -> None:
    env = {"SIMULATOR_PORT": "18090", "BOT_PORT": "18081", "BITBUCKET_WEBHOOK_SECRET": "the-shells-own-master"}
    configure_demo(env, tmp_path)
    kept = read_env_file(tmp_path / DEMO_SECRETS)
    assert env["PRGATE_ENCRYPTION_KEY"] == kept["PRGATE_ENCRYPTION_KEY"]
    assert env["BITBUCKET_WEBHOOK_SECRET"] == "the-shells-own-master"
    assert env["BITBUCKET_API_URL"] == env["BITBUCKET_WEB_URL"] == "http://127.0.0.1:18090/bitbucket"
    assert env["BOT_PUBLIC_URL"] == "http://127.0.0.1:18081"  # where the demo's workspace hook points
