"""The route table, in one place: it registers the handlers and generates the OpenAPI documents.

Two audiences, two documents: `/openapi.json` (and its rendered page, `/api/docs`) describes the
public API — the owner API, the public status, health —; the signed `/internal/*` contract between
our own services is `openapi_document("internal")`, generated from the same table but never served
publicly (docs/contract.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from backend_api.github.manifest import GitHubAppCredentials, SetupClaimRequest, SetupClaimResponse
from backend_api.http import api_tokens, bitbucket, bitbucket_events, handlers, owner, reconcile
from backend_api.http.auth import INTERNAL_PREFIX
from backend_api.http.errors import Handler
from backend_api.metrics import metrics_handler
from backend_api.web.api_docs import api_reference_page
from backend_api.web.manifest import internal_latest_credentials, internal_register_claim
from backend_api.web.revocation import internal_revoke
from shared_contracts.actions import (
    BatchResultRequest,
    BatchResultResponse,
    ClaimRequest,
    ClaimResponse,
    LeaseRequest,
    LeaseResponse,
    ResultRequest,
    ResultResponse,
)
from shared_contracts.api_tokens import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenList,
    ApiTokenRevoke,
    ApiTokenRevoked,
    RepositoryList,
)
from shared_contracts.bitbucket import (
    BitbucketCommandEvent,
    BitbucketConnectRequest,
    BitbucketConnectResponse,
    BitbucketDisconnectResponse,
    BitbucketPullRequestEvent,
    BitbucketPushEvent,
    BitbucketRediscoverRequest,
    BitbucketRediscoveryReport,
    BitbucketTokenResponse,
    BitbucketWorkspaceList,
)
from shared_contracts.common import ErrorBody
from shared_contracts.events import (
    CommandEvent,
    ConfigPushEvent,
    IngestBatchResponse,
    IngestResponse,
    InstallationSyncEvent,
    KnownDeliveriesRequest,
    KnownDeliveriesResponse,
    PullRequestEvent,
    PullRequestEventBatch,
    RepositoryRenamedEvent,
)
from shared_contracts.keys import Caller
from shared_contracts.owner import (
    ActionList,
    ChallengeList,
    ExemptResponse,
    GitHubAppStatus,
    Health,
    OwnerRepoSettings,
    OwnerSession,
    PublicAppStatus,
    RepoSettingsPatch,
    RepoSettingsUpdate,
    SessionRevokeRequest,
    SessionRevokeResponse,
)
from shared_contracts.reconcile import (
    InstallationSnapshot,
    PullRequestSnapshot,
    ReconcileRunFinish,
    ReconcileRunReport,
    ReconcileRunStart,
    ReconcileRunStarted,
    RepairsResponse,
)
from shared_contracts.repo_config import ConfigRefreshRequest, ConfigRefreshResponse


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    request: type[BaseModel] | None
    response: type[BaseModel]
    errors: tuple[int, ...]
    # Who may call it with a signed request (shared_contracts.keys.Caller); empty: not signed.
    callers: frozenset[Caller] = frozenset()
    # The OpenAPI operationId, when one handler serves two paths (by id and by owner/repo).
    operation_id: str | None = None

    @property
    def signed(self) -> bool:
        return bool(self.callers)


_INTERNAL_ERRORS = (400, 401, 403, 413, 415, 422)
# The scope of each component's key (docs/security.md). The worker ingests too: it replays the
# deliveries the receiver parked on Redis while the backend was away. Only the receiver faces the
# Internet, so its key opens ingestion and nothing else.
_INGEST = frozenset({Caller.RECEIVER, Caller.WORKER})
_WORKER = frozenset({Caller.WORKER})
_ADMIN = frozenset({Caller.ADMIN})
# Owner API (docs/owner-api.md): session cookie + admin on the repository, checked on GitHub; its
# reads also take an API token (docs/api-tokens.md).
_OWNER_ERRORS = (401, 403, 404, 422, 429, 502, 503)
_OWNER_WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503)

ROUTES: tuple[Route, ...] = (
    Route("POST", "/internal/v2/github/events/pull-request", handlers.pull_request_event,
          "Ingest a normalized pull_request webhook", PullRequestEvent, IngestResponse,
          _INTERNAL_ERRORS, callers=_INGEST),
    Route("POST", "/internal/v2/github/events/pull-requests", handlers.pull_request_events,
          "Ingest up to 100 normalized pull_request webhooks in one call; each is answered (or refused with an "
          "error to retry it) on its own, in order", PullRequestEventBatch, IngestBatchResponse,
          _INTERNAL_ERRORS, callers=_INGEST),
    Route("POST", "/internal/v2/github/events/installation-sync", handlers.installation_sync_event,
          "Ingest a normalized installation / installation_repositories webhook", InstallationSyncEvent,
          IngestResponse, _INTERNAL_ERRORS, callers=_INGEST),
    Route("POST", "/internal/v2/github/events/repository-renamed", handlers.repository_renamed_event,
          "Ingest a normalized repository.renamed webhook: the stored name of a known repository id follows",
          RepositoryRenamedEvent, IngestResponse, _INTERNAL_ERRORS, callers=_INGEST),
    Route("POST", "/internal/v2/github/events/config-push", handlers.config_push_event,
          "Ingest a push to the default branch that touched .github/prgate.yml: the backend reads the file "
          "again (docs/configuration.md); 503 when GitHub cannot be asked", ConfigPushEvent, IngestResponse,
          (*_INTERNAL_ERRORS, 503), callers=_INGEST),
    Route("POST", "/internal/v2/github/config/refresh", handlers.config_refresh,
          "Read up to max_repositories of the repositories marked stale (added to an installation or a "
          "connected Bitbucket workspace, or inheriting from a pushed file), GitHub's and Bitbucket's: the "
          "config-refresh job (docs/configuration.md)",
          ConfigRefreshRequest, ConfigRefreshResponse, _INTERNAL_ERRORS, callers=_WORKER),
    Route("POST", "/internal/v2/github/events/pr-command", handlers.command_event,
          "Ingest a `/prgate` command comment, enriched by the receiver", CommandEvent, IngestResponse,
          _INTERNAL_ERRORS, callers=_INGEST),
    Route("POST", "/internal/v2/github/deliveries/known", handlers.known_deliveries,
          "Which of these GitHub delivery ids (at most 100) the backend has recorded (redelivery job)",
          KnownDeliveriesRequest, KnownDeliveriesResponse, _INTERNAL_ERRORS, callers=_WORKER),
    # Reconciliation with GitHub (docs/reconcile.md): start, one snapshot per installation and repository, finish.
    Route("POST", "/internal/v2/github/reconcile/runs", reconcile.start_run,
          "Start a reconciliation run (every installation, or one)", ReconcileRunStart, ReconcileRunStarted,
          _INTERNAL_ERRORS, callers=_WORKER),
    Route("POST", "/internal/v2/github/reconcile/installation", reconcile.installation_snapshot,
          "One installation as GitHub lists it; repairs status and repository membership", InstallationSnapshot,
          RepairsResponse, (*_INTERNAL_ERRORS, 404, 409), callers=_WORKER),
    Route("POST", "/internal/v2/github/reconcile/pull-requests", reconcile.pull_request_snapshot,
          "A repository's open pull requests; evaluates those never decided as `opened`, and (complete list) "
          "cancels pending challenges of pull requests no longer open", PullRequestSnapshot, RepairsResponse,
          (*_INTERNAL_ERRORS, 404, 409), callers=_WORKER),
    Route("POST", "/internal/v2/github/reconcile/runs/{run_id}/finish", reconcile.finish_run,
          "Finish a run: installations GitHub no longer lists are deleted; errors recorded; the run's report",
          ReconcileRunFinish, ReconcileRunReport, (*_INTERNAL_ERRORS, 404, 409), callers=_WORKER),
    Route("POST", "/internal/v2/bot-actions/claim", handlers.claim,
          "Lease up to max_actions claimable actions", ClaimRequest, ClaimResponse,
          _INTERNAL_ERRORS, callers=_WORKER),
    Route("POST", "/internal/v2/bot-actions/{action_id}/result", handlers.result,
          "Report the outcome of one leased attempt", ResultRequest, ResultResponse,
          (*_INTERNAL_ERRORS, 404, 409), callers=_WORKER),
    Route("POST", "/internal/v2/bot-actions/{action_id}/lease", handlers.lease,
          "Extend the lease of an attempt still running; only while this worker holds that attempt's "
          "unexpired lease", LeaseRequest, LeaseResponse, (*_INTERNAL_ERRORS, 404, 409), callers=_WORKER),
    Route("POST", "/internal/v2/bot-actions/results", handlers.results,
          "Report up to 100 outcomes in one call; each is applied or refused (stale_lease / unknown_action) "
          "on its own", BatchResultRequest, BatchResultResponse, _INTERNAL_ERRORS, callers=_WORKER),
    Route("POST", "/internal/v2/github-app/setup-claims", internal_register_claim,
          "Open a one-time setup claim: one App may be registered under it within an hour (docs/github-app.md)",
          SetupClaimRequest, SetupClaimResponse, _INTERNAL_ERRORS, callers=_ADMIN),
    Route("GET", "/internal/v2/github-app/credentials/latest", internal_latest_credentials,
          "The GitHub App registered under ?claim= (required), answered once and then deleted "
          "(docs/github-app.md)", None, GitHubAppCredentials, (400, 401, 403, 404), callers=_ADMIN),
    Route("POST", "/internal/v2/sessions/revoke", internal_revoke,
          "Revoke one browser session (session_id, logged at sign-in) or every session of a GitHub user issued "
          "until now (github_user_id); checked on each request (docs/security.md)", SessionRevokeRequest,
          SessionRevokeResponse, _INTERNAL_ERRORS, callers=_ADMIN),
    # API tokens (docs/api-tokens.md): prgate api-token create|list|revoke, with the admin key.
    Route("POST", "/internal/v2/api-tokens", api_tokens.create_token,
          "Create an API token for the read APIs (operator, installation, workspace or Jira site); the answer "
          "is the only place the token ever appears (only its SHA-256 is stored)", ApiTokenCreate, ApiTokenCreated,
          (*_INTERNAL_ERRORS, 404, 409), callers=_ADMIN),
    Route("GET", "/internal/v2/api-tokens", api_tokens.list_tokens,
          "Every API token: name, scope, created, last used, revoked (never the token)", None, ApiTokenList,
          (401, 403), callers=_ADMIN),
    Route("POST", "/internal/v2/api-tokens/revoke", api_tokens.revoke_token,
          "Revoke the live token of a name, or the token of an id: it answers 401 from then on", ApiTokenRevoke,
          ApiTokenRevoked, (*_INTERNAL_ERRORS, 404), callers=_ADMIN),
    Route("GET", "/api/v1/repositories", owner.list_repositories,
          "Every monitored repository the caller may read, any provider (Authorization: Bearer <token>, or an "
          "operator's session)", None, RepositoryList, (401, 403)),
    Route("GET", "/api/v1/repos/{repo_id}/github-app-status", handlers.github_app_status,
          "Whether prgate is installed on a repository (public: nothing else)", None, PublicAppStatus, (404,)),
    Route("GET", "/api/v1/repos/{repo_id}/installation", owner.get_installation,
          "Install details of a repository: name, installation, account (admins)", None, GitHubAppStatus,
          _OWNER_ERRORS),
    Route("GET", "/api/v1/session", owner.owner_session,
          "Who is signed in, and the X-CSRF-Token for state-changing owner calls", None, OwnerSession, (401,)),
    Route("GET", "/api/v1/repos/{repo_id}/settings", owner.get_repo_settings,
          "Gate settings of a repository (admins)", None, OwnerRepoSettings, _OWNER_ERRORS),
    Route("PUT", "/api/v1/repos/{repo_id}/settings", owner.put_repo_settings,
          "Replace the gate settings of a repository (fields left out take their defaults; an unknown field is "
          "422); challenge_answer is stored hashed (admins, X-CSRF-Token)",
          RepoSettingsUpdate, OwnerRepoSettings, _OWNER_WRITE_ERRORS),
    Route("PATCH", "/api/v1/repos/{repo_id}/settings", owner.patch_repo_settings,
          "Change only the settings given (JSON merge patch: null sets a field back to its default; an unknown "
          "field is 422) (admins, X-CSRF-Token)", RepoSettingsPatch, OwnerRepoSettings, _OWNER_WRITE_ERRORS),
    Route("GET", "/api/v1/repos/{repo_id}/challenges", owner.list_challenges,
          "Challenges of a repository, most recent first; ?limit= (1-200, default 50) &before=<challenge_id>",
          None, ChallengeList, _OWNER_ERRORS),
    Route("GET", "/api/v1/repos/{repo_id}/actions", owner.list_actions,
          "Outbox actions of a repository, most recent first; ?limit= (1-200, default 50) &before=<action_id>",
          None, ActionList, _OWNER_ERRORS),
    Route("POST", "/api/v1/repos/{repo_id}/pulls/{number}/exempt", owner.exempt_pull,
          "Exempt a pull request, as `/prgate exempt` does (admins, X-CSRF-Token)", None, ExemptResponse,
          (*_OWNER_ERRORS, 409)),
    # Bitbucket events (docs/bitbucket.md "The gate"), normalized by the receiver.
    Route("POST", "/internal/v2/bitbucket/events/pull-request", bitbucket_events.bitbucket_pull_request_event,
          "Ingest a normalized Bitbucket pullrequest:created/updated/fulfilled/rejected; 503 when Bitbucket "
          "cannot be asked for the author's permission", BitbucketPullRequestEvent, IngestResponse,
          (*_INTERNAL_ERRORS, 503), callers=_INGEST),
    Route("POST", "/internal/v2/bitbucket/events/command", bitbucket_events.bitbucket_command_event,
          "Ingest a `/prgate` command from a Bitbucket pull-request comment; 503 when Bitbucket cannot be asked "
          "for the commenter's permission", BitbucketCommandEvent, IngestResponse,
          (*_INTERNAL_ERRORS, 503), callers=_INGEST),
    Route("POST", "/internal/v2/bitbucket/events/push", bitbucket_events.bitbucket_push_event,
          "Ingest a push to a Bitbucket repository's main branch: the backend reads .prgate.yml again "
          "(docs/bitbucket.md); 503 when Bitbucket cannot be asked", BitbucketPushEvent, IngestResponse,
          (*_INTERNAL_ERRORS, 503), callers=_INGEST),
    # Bitbucket tenancy (docs/bitbucket.md "Tenancy"): the workers' token and re-discovery, the operator's API.
    Route("POST", "/internal/v2/bitbucket/tenants/{tenant_id}/token", bitbucket.workspace_token,
          "A connected workspace's access token, for a worker about to act on it (404: unknown or disconnected)",
          None, BitbucketTokenResponse, (401, 403, 404, 503), callers=_WORKER),
    Route("POST", "/internal/v2/bitbucket/rediscover", bitbucket.rediscover,
          "List every ACTIVE workspace's repositories again: new ones added, vanished ones marked removed",
          BitbucketRediscoverRequest, BitbucketRediscoveryReport, _INTERNAL_ERRORS, callers=_WORKER),
    Route("POST", "/api/v1/bitbucket/workspaces", bitbucket.connect_workspace,
          "Connect a Bitbucket workspace (or again, with a new token): check the token, discover the repositories, "
          "register the hook (operators, X-CSRF-Token; or signed with the admin key)",
          BitbucketConnectRequest, BitbucketConnectResponse, (400, 401, 403, 413, 415, 422, 502, 503)),
    Route("GET", "/api/v1/bitbucket/workspaces", bitbucket.list_workspaces,
          "Every Bitbucket workspace prgate knows, connected or not; never a token (operators)",
          None, BitbucketWorkspaceList, (401, 403)),
    Route("DELETE", "/api/v1/bitbucket/workspaces/{workspace}", bitbucket.disconnect_workspace,
          "Disconnect a workspace: delete its hook, cancel its pending challenges and untaken actions; ?purge=true "
          "deletes its data too (operators, X-CSRF-Token; or signed with the admin key)",
          None, BitbucketDisconnectResponse, (400, 401, 403, 404, 502, 503)),
    Route("GET", "/healthz", handlers.healthz, "Process is up", None, Health, ()),
    Route("GET", "/readyz", handlers.readyz, "Database reachable", None, Health, (503,)),
)

_BY_ID = "/api/v1/repos/{repo_id}/"


def _by_name(route: Route) -> Route:
    """The owner route addressed by ``owner/repo`` instead of the numeric id (docs/owner-api.md);
    ``?provider=bitbucket`` makes the name a Bitbucket ``workspace/slug``."""
    return replace(
        route, path=route.path.replace(_BY_ID, "/api/v1/repos/{owner}/{repo}/"),
        summary=f"{route.summary}; the repository by its owner/repo name (?provider=bitbucket: a Bitbucket "
                "workspace/slug)",
        operation_id=f"{route.handler.__name__}_by_name",
    )


# Every owner route (an admin's, behind the session) also by name. Not the public install status: by
# name it would tell anyone whether prgate runs on a private repository they can only guess the name of.
ROUTES = ROUTES + tuple(
    _by_name(r) for r in ROUTES if r.path.startswith(_BY_ID) and r.handler.__module__ == owner.__name__
)

# The two segments: GitHub's owner and repository, or Bitbucket's workspace and slug, whichever is
# wider (http.owner checks the provider's own rule: anything else is 404).
_NAME_SCHEMAS: dict[str, dict[str, Any]] = {
    "owner": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,61}$"},
    "repo": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,100}$"},
    "workspace": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,61}$"},
}


def internal_scopes() -> dict[tuple[str, str], frozenset[Caller]]:
    """``(METHOD, path template)`` of every signed route → the callers whose keys it accepts."""
    return {(route.method, route.path): route.callers for route in ROUTES if route.callers}


Audience = Literal["public", "internal"]


def routes_for(audience: Audience) -> tuple[Route, ...]:
    return tuple(r for r in ROUTES if r.path.startswith(INTERNAL_PREFIX) == (audience == "internal"))


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    app.router.add_get("/openapi.json", openapi_handler)
    app.router.add_get("/api/docs", api_docs_handler)  # the same document, rendered for people
    app.router.add_get("/metrics", metrics_handler)  # Prometheus text, not JSON: not in the OpenAPI document


def openapi_document(audience: Audience = "public") -> dict[str, Any]:
    routes = routes_for(audience)
    models: set[type[BaseModel]] = {ErrorBody}
    for route in routes:
        models.add(route.response)
        if route.request is not None:
            models.add(route.request)
    keyed = [(m, "validation" if m in {r.request for r in routes} else "serialization") for m in models]
    _, schema = models_json_schema(
        sorted(keyed, key=lambda kv: kv[0].__name__),  # type: ignore[arg-type]
        ref_template="#/components/schemas/{model}",
    )

    def ref(model: type[BaseModel]) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.operation_id or route.handler.__name__,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": ref(route.response)}}},
                **{
                    str(code): {"description": "Error",
                                "content": {"application/json": {"schema": ref(ErrorBody)}}}
                    for code in route.errors
                },
            },
        }
        params = [seg[1:-1] for seg in route.path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True,
                 "schema": _NAME_SCHEMAS.get(p, {"type": "integer", "minimum": 0})}
                for p in params
            ]
        if "{owner}" in route.path and route.handler.__module__ == owner.__name__:
            op.setdefault("parameters", []).append(
                {"name": "provider", "in": "query", "required": False,
                 "description": "Whose name {owner}/{repo} is: github (default) or bitbucket (workspace/slug)",
                 "schema": {"type": "string", "enum": ["github", "bitbucket"], "default": "github"}})
        if route.request is not None:
            op["requestBody"] = {
                "required": True, "content": {"application/json": {"schema": ref(route.request)}}
            }
        if route.signed:
            op["security"] = [{"prgateSignature": []}]
        paths.setdefault(route.path, {})[route.method.lower()] = op
    components: dict[str, Any] = {"schemas": schema.get("$defs", {})}
    if any(route.signed for route in routes):
        components["securitySchemes"] = {
            "prgateSignature": {
                "type": "apiKey", "in": "header", "name": "X-Prgate-Signature",
                "description": "HMAC-SHA256 request signature with X-Prgate-Timestamp and X-Prgate-Nonce; "
                "see docs/contract.md",
            }
        }
    title = "prgate API" if audience == "public" else "prgate internal API (between prgate's own services)"
    return {"openapi": "3.1.0", "info": {"title": title, "version": "2"}, "paths": paths, "components": components}


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(openapi_document("public"))


async def api_docs_handler(request: web.Request) -> web.Response:
    return api_reference_page(openapi_document("public"))
