"""Real GitHub webhook payloads (tests/fixtures/github, from @octokit/webhooks-examples), rewritten per scenario."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github"

# A representative real payload per action (those that carry an installation object).
_PR_FIXTURE = {
    "opened": "pull_request.opened.13.json",
    "reopened": "pull_request.reopened.18.json",
    "closed": "pull_request.closed.3.json",
    "ready_for_review": "pull_request.ready_for_review.16.json",
    "converted_to_draft": "pull_request.converted_to_draft.6.json",
    "synchronize": "pull_request.synchronize.22.json",
    "labeled": "pull_request.labeled.8.json",
}


@cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def fixture(name: str) -> dict[str, Any]:
    return copy.deepcopy(_load(name))


def pull_request_payload(
    action: str = "opened",
    *,
    installation_id: int = 1001,
    repo_id: int = 5001,
    full_name: str = "octo-org/widgets",
    number: int = 7,
    author_login: str = "newcomer",
    author_id: int = 9001,
    author_type: str = "User",
    association: str = "NONE",
    draft: bool = False,
    state: str | None = None,
    head_sha: str = "0123456789abcdef0123456789abcdef01234567",
) -> dict[str, Any]:
    payload = fixture(_PR_FIXTURE[action])
    payload["action"] = action
    payload["installation"] = {"id": installation_id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u"}
    owner = full_name.split("/")[0]
    payload["repository"].update({"id": repo_id, "full_name": full_name, "name": full_name.split("/")[1]})
    payload["repository"]["owner"]["login"] = owner
    pr = payload["pull_request"]
    pr.update(
        {
            "number": number,
            "id": repo_id * 100_000 + number,
            "draft": draft,
            "author_association": association,
            "state": state or ("closed" if action == "closed" else "open"),
            "html_url": f"https://github.com/{full_name}/pull/{number}",
        }
    )
    pr["user"].update({"login": author_login, "id": author_id, "type": author_type})
    pr["head"]["sha"] = head_sha
    payload["number"] = number
    payload["sender"].update({"login": author_login, "id": author_id, "type": author_type})
    return payload


def installation_payload(
    action: str = "created",
    *,
    installation_id: int = 1001,
    account_login: str = "octo-org",
    account_id: int = 777,
    account_type: str = "Organization",
    repos: list[tuple[int, str]] | None = None,
    selection: str = "selected",
) -> dict[str, Any]:
    name = {
        "created": "installation.created.1.json",
        "deleted": "installation.deleted.0.json",
        "suspend": "installation.suspend.5.json",
        "unsuspend": "installation.unsuspend.6.json",
        "new_permissions_accepted": "installation.new_permissions_accepted.4.json",
    }[action]
    payload = fixture(name)
    inst = payload["installation"]
    inst["id"] = installation_id
    inst["account"].update({"login": account_login, "id": account_id, "type": account_type})
    inst["repository_selection"] = selection
    if action == "created":
        payload["repositories"] = [
            {"id": rid, "node_id": "x", "name": fn.split("/")[1], "full_name": fn, "private": False}
            for rid, fn in (repos if repos is not None else [(5001, f"{account_login}/widgets")])
        ]
    return payload


def installation_repositories_payload(
    action: str,
    *,
    installation_id: int = 1001,
    account_login: str = "octo-org",
    repos: list[tuple[int, str]],
) -> dict[str, Any]:
    payload = fixture(
        "installation_repositories.added.0.json" if action == "added" else "installation_repositories.removed.2.json"
    )
    payload["action"] = action
    payload["installation"]["id"] = installation_id
    payload["installation"]["account"]["login"] = account_login
    listed = [
        {"id": rid, "node_id": "x", "name": fn.split("/")[1], "full_name": fn, "private": False} for rid, fn in repos
    ]
    payload["repositories_added"] = listed if action == "added" else []
    payload["repositories_removed"] = listed if action == "removed" else []
    return payload
