"""The repository config file, pure: parse and validate one `.github/prgate.yml`, merge the levels
(organization defaults < `_extends` < the repository's own file), lay the result over the owner
API's settings. No I/O: the refresh (`gate/repo_config.py`) reads the files and stores the result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from shared_contracts.owner import RepoSettings
from shared_contracts.repo_config import CONFIG_PATH, RepoConfigFile, SettingSource

MAX_FILE_BYTES = 64 * 1024


class ConfigFileError(ValueError):
    """The file cannot be used; the message is what the owner is shown (status, dashboard)."""


def parse(raw: bytes, where: str = CONFIG_PATH) -> RepoConfigFile:
    """One file's text → its validated keys. An empty file is an empty configuration (as Probot)."""
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigFileError(f"{where}: larger than {MAX_FILE_BYTES} bytes")
    try:
        loaded = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigFileError(f"{where}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigFileError(f"{where}: not valid YAML{at}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigFileError(f"{where}: must be a mapping of settings, not {type(loaded).__name__}")
    try:
        return RepoConfigFile.model_validate(loaded)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ConfigFileError(f"{where}: " + "; ".join(problems)) from None


def extends_target(value: str, repo_full_name: str) -> str:
    """`_extends: other` means the same owner's `other`; `owner/other` is taken as written."""
    return value if "/" in value else f"{repo_full_name.split('/', 1)[0]}/{value}"


@dataclass(frozen=True, slots=True)
class Layer:
    """One file's contribution: where it came from and the keys it sets."""

    full_name: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Merged:
    config: dict[str, Any]
    key_sources: dict[str, str]  # setting → the full name of the repository whose file set it


def merge(layers: Sequence[Layer]) -> Merged:
    """Lowest level first; a later layer's key replaces an earlier one's (lists are not concatenated,
    as in Probot: a repository that lists its whitelist means that list)."""
    config: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.values.items():
            config[key] = value
            sources[key] = layer.full_name
    return Merged(config, sources)


def effective(
    api: RepoSettings | None, config: Mapping[str, Any] | None
) -> tuple[RepoSettings, dict[str, SettingSource]]:
    """The settings in force and where each came from: the file wins over the owner API's settings,
    which win over the defaults. ``api`` None: the repository has no settings row."""
    base = api if api is not None else RepoSettings()
    defaults = RepoSettings()
    sources: dict[str, SettingSource] = {}
    for key in RepoSettings.model_fields:
        if key == "whitelist_user_ids":
            continue
        if config is not None and key in config:
            sources[key] = "file"
        elif api is not None and getattr(api, key) != getattr(defaults, key):
            sources[key] = "api"
        else:
            sources[key] = "default"
    if not config:
        return base, sources
    merged = {**base.model_dump(), **dict(config)}
    if "whitelist_logins" in config and "whitelist_user_ids" not in config:
        merged["whitelist_user_ids"] = []  # never pair the file's logins with the API's ids
    return RepoSettings.model_validate(merged), sources
