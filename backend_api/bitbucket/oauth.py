"""Sign in with Bitbucket, the server side of the OAuth 2.0 authorization code flow.

Trade the code (``{BITBUCKET_WEB_URL}/site/oauth2/access_token``), ask ``{BITBUCKET_API_URL}/2.0/user``
who the token belongs to, forget the token. The HTTP is ``provider_clients.bitbucket.api``'s; what a
refusal *means* to a signing-in browser is decided here. The pages around it are ``web/auth.py``.
"""

from __future__ import annotations

import aiohttp
from pydantic import ValidationError

from backend_api.settings import BackendSettings
from provider_clients.bitbucket.api import BitbucketClient, authorize_url, oauth_exchange
from provider_clients.bitbucket.errors import BadRequest, BitbucketError
from provider_clients.bitbucket.hook_secret import bare_uuid
from shared_contracts.bitbucket import BitbucketAccount

CALLBACK_PATH = "/auth/bitbucket/callback"


class SignInRefused(Exception):
    """Bitbucket refused the code (expired, used, or issued for another redirect): start again (400)."""


class BitbucketUnavailable(Exception):
    """Bitbucket failed, was unreachable, refused our consumer's credentials or answered nonsense (502)."""


def configured(settings: BackendSettings) -> bool:
    return bool(settings.bitbucket_oauth_client_id and settings.bitbucket_oauth_client_secret.get_secret_value())


def callback_url(settings: BackendSettings) -> str:
    return f"{settings.public_url.rstrip('/')}{CALLBACK_PATH}"


def authorize(settings: BackendSettings, state: str) -> str:
    return authorize_url(settings.bitbucket_web_url, settings.bitbucket_oauth_client_id, state, callback_url(settings))


async def signed_in_account(http: aiohttp.ClientSession, settings: BackendSettings, code: str) -> BitbucketAccount:
    """The account ``code`` was granted by; its token is used for one ``GET /2.0/user`` and dropped."""
    try:
        token = await oauth_exchange(
            http, settings.bitbucket_web_url, client_id=settings.bitbucket_oauth_client_id,
            client_secret=settings.bitbucket_oauth_client_secret.get_secret_value(), code=code,
            redirect_uri=callback_url(settings),
        )
    except BadRequest as exc:
        if exc.status == 400:  # RFC 6749 invalid_grant: the code is unknown, used or expired
            raise SignInRefused(exc.reason) from None
        raise BitbucketUnavailable(str(exc)) from None
    except BitbucketError as exc:  # 401 invalid_client is our configuration, not the user's doing
        raise BitbucketUnavailable(str(exc)) from None
    try:
        user = await BitbucketClient(http, settings.bitbucket_api_url, token.access_token).current_user()
    except BitbucketError as exc:
        raise BitbucketUnavailable(str(exc)) from None
    uuid = bare_uuid(user.uuid)
    if uuid is None or not user.account_id:
        # account_id is what a pull request's author is matched by: without it nobody can be verified.
        raise BitbucketUnavailable("GET /2.0/user answered no uuid and account_id")
    try:
        return BitbucketAccount(uuid=uuid, account_id=user.account_id, nickname=user.nickname or "",
                                display_name=user.display_name or "", type=user.type)
    except ValidationError:
        raise BitbucketUnavailable("GET /2.0/user answered an account prgate cannot read") from None
