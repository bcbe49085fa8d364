"""The Bitbucket simulator's route tables: REST 2.0 (with the credential each route needs), the
HTML pages and ``/_sim/``. Auth kinds: ``workspace`` (an access token), ``user`` (an OAuth token),
``any`` (either). Path parts that may be braced UUIDs match ``[^/]+`` (aiohttp's default refuses braces)."""

from __future__ import annotations

from prgate.simulator.bitbucket import control, pages
from prgate.simulator.bitbucket.rest import pullrequests, repositories, workspaces
from prgate.simulator.core import control as control_core
from prgate.simulator.core.control import Handler

REPO = "/2.0/repositories/{workspace:[^/]+}/{repo_slug:[^/]+}"
PR = REPO + "/pullrequests/{pr_id}"

API_ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/2.0/user", workspaces.get_user, "user"),
    ("GET", "/2.0/user/workspaces", workspaces.list_user_workspaces, "user"),
    ("GET", "/2.0/workspaces/{workspace:[^/]+}", workspaces.get_workspace, "workspace"),
    ("GET", "/2.0/workspaces/{workspace:[^/]+}/hooks", workspaces.list_hooks, "workspace"),
    ("POST", "/2.0/workspaces/{workspace:[^/]+}/hooks", workspaces.create_hook, "workspace"),
    ("GET", "/2.0/workspaces/{workspace:[^/]+}/hooks/{uid:[^/]+}", workspaces.get_hook, "workspace"),
    ("PUT", "/2.0/workspaces/{workspace:[^/]+}/hooks/{uid:[^/]+}", workspaces.update_hook, "workspace"),
    ("DELETE", "/2.0/workspaces/{workspace:[^/]+}/hooks/{uid:[^/]+}", workspaces.delete_hook, "workspace"),
    ("GET", "/2.0/workspaces/{workspace:[^/]+}/permissions/repositories/{repo_slug:[^/]+}",
     workspaces.list_repository_permissions, "workspace"),
    ("GET", "/2.0/repositories/{workspace:[^/]+}", repositories.list_repositories, "any"),
    ("GET", REPO, repositories.get_repository, "any"),
    ("GET", REPO + "/src/{ref}/{path:.+}", repositories.get_src, "workspace"),
    ("POST", REPO + "/commit/{commit}/statuses/build", repositories.create_build_status, "workspace"),
    ("GET", REPO + "/commit/{commit}/statuses/build/{key}", repositories.get_build_status, "workspace"),
    ("GET", REPO + "/commit/{commit}/statuses", repositories.list_statuses, "workspace"),
    ("GET", REPO + "/pullrequests", pullrequests.list_pull_requests, "workspace"),
    ("GET", PR, pullrequests.get_pull_request, "workspace"),
    ("GET", PR + "/comments", pullrequests.list_comments, "workspace"),
    ("POST", PR + "/comments", pullrequests.create_comment, "workspace"),
    ("GET", PR + "/comments/{comment_id}", pullrequests.get_comment, "workspace"),
    ("PUT", PR + "/comments/{comment_id}", pullrequests.update_comment, "workspace"),
    ("POST", PR + "/decline", pullrequests.decline, "workspace"),
)

PAGE_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/{workspace:[^/]+}/{repo_slug:[^/]+}/pull-requests/{pr_id}", pages.pull_request_page),
)

SIM_REPO = "/_sim/repositories/{workspace:[^/]+}/{repo_slug:[^/]+}"
SIM_PR = SIM_REPO + "/pullrequests/{pr_id}"

SIM_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/_sim/health", control.sim_health),
    ("POST", "/_sim/workspaces", control.sim_create_workspace),
    ("POST", "/_sim/workspaces/{workspace:[^/]+}/tokens", control.sim_create_token),
    ("POST", "/_sim/workspaces/{workspace:[^/]+}/repositories", control.sim_create_repository),
    ("GET", "/_sim/workspaces/{workspace:[^/]+}/hooks", control.sim_list_hooks),
    ("POST", "/_sim/users", control.sim_register_user),
    ("PUT", SIM_REPO + "/permissions/{account_id}", control.sim_set_permission),
    ("POST", SIM_REPO + "/pullrequests", control.sim_open_pull_request),
    ("POST", SIM_PR + "/commits", control.sim_push_commit),
    ("PUT", SIM_PR + "/draft", control.sim_set_draft),
    ("GET", SIM_PR + "/comments", control.sim_list_comments),
    ("POST", SIM_PR + "/comments", control.sim_add_comment),
    ("POST", SIM_PR + "/merge", control.sim_merge),
    ("POST", SIM_PR + "/decline", control.sim_decline),
    ("POST", SIM_REPO + "/files", control.sim_commit_file),
    ("GET", SIM_REPO + "/commit/{ref}/statuses", control.sim_list_statuses),
    ("DELETE", SIM_REPO, control.sim_delete_repository),
    ("GET", "/_sim/deliveries", control.sim_list_deliveries),
    ("POST", "/_sim/deliveries/{request_uuid}/resend", control.sim_resend_delivery),
    ("DELETE", "/_sim/deliveries", control.sim_clear_deliveries),
    *control_core.CONTROL_ROUTES,
)
