"""The GitHub simulator's route tables: REST (with the auth each route needs) and ``/_sim/``."""

from __future__ import annotations

from prgate.simulator.core import control as control_core
from prgate.simulator.core.control import Handler
from prgate.simulator.github import control, manifest, oauth
from prgate.simulator.github.auth import AuthKind
from prgate.simulator.github.rest import apps, comments, contents, pulls, repos, users

API_ROUTES: tuple[tuple[str, str, Handler, AuthKind], ...] = (
    ("POST", "/app/installations/{installation_id}/access_tokens", apps.create_access_token, "app"),
    ("GET", "/app/installations", apps.list_app_installations, "app"),
    ("GET", "/app/installations/{installation_id}", apps.get_app_installation, "app"),
    ("GET", "/app/hook/deliveries", apps.list_hook_deliveries, "app"),
    ("GET", "/app/hook/deliveries/{delivery_id}", apps.get_hook_delivery, "app"),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts", apps.redeliver_hook_delivery, "app"),
    ("GET", "/repos/{owner}/{repo}/installation", apps.get_repo_installation, "app"),
    ("GET", "/installation/repositories", apps.list_installation_repositories, "installation"),
    ("GET", "/user", oauth.get_authenticated_user, "user"),
    ("POST", "/app-manifests/{code}/conversions", manifest.convert, "none"),
    ("GET", "/app", apps.get_authenticated_app, "app"),
    ("GET", "/repos/{owner}/{repo}", repos.get_repository, "installation"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", comments.list_issue_comments, "installation"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", comments.create_issue_comment, "installation"),
    ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}", comments.get_issue_comment, "installation"),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", comments.update_issue_comment, "installation"),
    ("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}", comments.delete_issue_comment, "installation"),
    ("GET", "/repos/{owner}/{repo}/pulls", pulls.list_pull_requests, "installation"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", pulls.get_pull_request, "installation"),
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}", pulls.update_pull_request, "installation"),
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}", repos.create_commit_status, "installation"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses", repos.list_commit_statuses, "installation"),
    ("GET", "/repos/{owner}/{repo}/contents/{path:.+}", contents.get_contents, "installation"),
    (
        "GET",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
        repos.get_collaborator_permission,
        "installation",
    ),
)


def _by_id(routes: tuple[tuple[str, str, Handler, AuthKind], ...]) -> tuple[tuple[str, str, Handler, AuthKind], ...]:
    """Every ``/repos/{owner}/{repo}…`` route again as ``/repositories/{repository_id}…``, as GitHub
    serves them: a client that acts by id never reaches a repository that merely took over a name."""
    prefix = "/repos/{owner}/{repo}"
    return tuple(
        (method, "/repositories/{repository_id}" + path[len(prefix):], handler, auth)
        for method, path, handler, auth in routes
        if path.startswith(prefix)
    )


API_ROUTES = API_ROUTES + _by_id(API_ROUTES)
API_ROUTES = (
    *API_ROUTES,
    ("GET", "/users/{username}", users.get_user_by_login, "installation"),
    ("GET", "/user/installations", users.list_user_installations, "user"),
)

SIM_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/_sim/health", control.sim_health),
    ("GET", "/_sim/installations", control.sim_list_installations),
    ("POST", "/_sim/installations", control.sim_create_installation),
    ("PATCH", "/_sim/installations/{installation_id}", control.sim_update_installation),
    ("DELETE", "/_sim/installations/{installation_id}", control.sim_delete_installation),
    ("POST", "/_sim/installations/{installation_id}/repositories", control.sim_add_repository),
    ("DELETE", "/_sim/installations/{installation_id}/repositories/{repo_id}", control.sim_remove_repository),
    ("PATCH", "/_sim/repositories/{repo_id}", control.sim_rename_repository),
    ("POST", "/_sim/pulls", control.sim_upsert_pull_request),
    ("GET", "/_sim/repos/{owner}/{repo}/pulls/{pull_number}", control.sim_get_pull_request),
    ("GET", "/_sim/repos/{owner}/{repo}/pulls/{pull_number}/comments", control.sim_list_comments),
    ("GET", "/_sim/repos/{owner}/{repo}/statuses/{ref}", control.sim_list_statuses),
    ("PUT", "/_sim/repos/{owner}/{repo}/collaborators/{username}", control.sim_set_permission),
    ("POST", "/_sim/repos/{owner}/{repo}/commits", control.sim_commit_file),
    ("GET", "/_sim/tokens", control.sim_tokens),
    ("POST", "/_sim/tokens/expire", control.sim_expire_tokens),
    ("GET", "/_sim/deliveries", control.sim_list_deliveries),
    ("POST", "/_sim/webhooks", control.sim_send_webhook),
    ("POST", "/_sim/users", control.sim_register_user),
    ("PATCH", "/_sim/users/{login}", control.sim_rename_user),
    ("POST", "/_sim/repos/{owner}/{repo}/pulls/{pull_number}/comments", control.sim_add_comment),
    *control_core.CONTROL_ROUTES,
)
