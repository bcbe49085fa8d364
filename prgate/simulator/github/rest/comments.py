"""Issue comments: list, create, get, edit and delete (only the App's own)."""

from __future__ import annotations

from aiohttp import web

from prgate.simulator.core.http import json_body
from prgate.simulator.core.types import JsonDict
from prgate.simulator.github.errors import DOCS, ApiError
from prgate.simulator.github.http import (
    paginate,
    path_int,
    renderer_of,
    require,
    scoped_repo,
    state_of,
)
from prgate.simulator.github.model import IssueComment
from prgate.simulator.github.state import SimulatorState

MAX_COMMENT_LENGTH = 65536


async def list_issue_comments(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "read", "issues", "pull_requests")
    comments = state_of(request).comments_for(repo.full_name, path_int(request, "issue_number"))
    page, headers = paginate(request, comments)
    render = renderer_of(request)
    return web.json_response([render.comment(c) for c in page], headers=headers)


def _comment_body(body: JsonDict, resource: str = "IssueComment") -> str:
    text = body.get("body")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(
            422,
            "Validation Failed",
            errors=[{"resource": resource, "code": "missing_field", "field": "body"}],
            documentation_url=f"{DOCS}/issues/comments#create-an-issue-comment",
        )
    if len(text) > MAX_COMMENT_LENGTH:
        raise ApiError(
            422,
            "Validation Failed",
            errors=[
                {
                    "resource": resource,
                    "code": "custom",
                    "field": "body",
                    "message": f"body is too long (maximum is {MAX_COMMENT_LENGTH} characters)",
                }
            ],
        )
    return text


async def create_issue_comment(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "write", "issues", "pull_requests")
    state = state_of(request)
    number = path_int(request, "issue_number")
    state.get_pull_request(repo.full_name, number)
    text = _comment_body(await json_body(request))
    comment = state.add_comment(repo.full_name, number, text, via_app=state.app)
    data = renderer_of(request).comment(comment)
    return web.json_response(data, status=201, headers={"Location": data["url"]})


async def get_issue_comment(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "read", "issues", "pull_requests")
    comment = state_of(request).get_comment(repo.full_name, path_int(request, "comment_id"))
    return web.json_response(renderer_of(request).comment(comment))


async def update_issue_comment(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "write", "issues", "pull_requests")
    state = state_of(request)
    comment_id = path_int(request, "comment_id")
    _refuse_other_apps_comment(state, state.get_comment(repo.full_name, comment_id))
    comment = state.update_comment(repo.full_name, comment_id, _comment_body(await json_body(request)))
    return web.json_response(renderer_of(request).comment(comment))


async def delete_issue_comment(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "write", "issues", "pull_requests")
    state = state_of(request)
    _refuse_other_apps_comment(state, state.get_comment(repo.full_name, path_int(request, "comment_id")))
    state.delete_comment(repo.full_name, path_int(request, "comment_id"))
    return web.Response(status=204)


def _refuse_other_apps_comment(state: SimulatorState, comment: IssueComment) -> None:
    """GitHub lets an installation token edit or delete neither another App's comment nor a comment
    by another App's bot user: 403, as for any resource the integration cannot reach."""
    foreign_app = comment.via_app is not None and comment.via_app.id != state.config.app_id
    foreign_bot = comment.user.type == "Bot" and comment.user.login != state.bot_user.login
    if foreign_app or foreign_bot:
        raise ApiError(
            403, "Resource not accessible by integration",
            documentation_url=f"{DOCS}/issues/comments#update-an-issue-comment",
        )
