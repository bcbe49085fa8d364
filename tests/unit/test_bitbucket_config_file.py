"""The pure parts of Bitbucket's `.prgate.yml`: `_extends` stays in the workspace, the blob id is
git's, and the worker keys the config status apart from the gate's."""

from __future__ import annotations

import subprocess

import pytest

from backend_api.challenges.config_file import ConfigFileError
from backend_api.gate.bitbucket_config import TextBlob, extends_in_workspace
from bot_worker.providers.bitbucket.runner import status_key


def test_extends_names_a_repository_of_the_same_workspace() -> None:
    assert extends_in_workspace("defaults", "acme/app") == "acme/defaults"
    assert extends_in_workspace("acme/defaults", "acme/app") == "acme/defaults"
    assert extends_in_workspace("ACME/defaults", "acme/app") == "ACME/defaults"
    with pytest.raises(ConfigFileError, match=r"only a repository of the same workspace \(acme\)"):
        extends_in_workspace("other/defaults", "acme/app")


def test_the_blob_id_is_gits() -> None:
    text = "warn_only: true\n# é\n"
    expected = subprocess.run(["git", "hash-object", "--stdin"], input=text.encode(), capture_output=True,
                              check=True).stdout.decode().strip()
    assert TextBlob.of(text).sha == expected
    assert TextBlob.of(text).content == text.encode()


def test_the_config_status_has_its_own_key() -> None:
    assert status_key("prgate") == "prgate"
    assert status_key("prgate/config") == "prgate-config"
