"""Typed application keys: the backend's explicit dependencies."""

from __future__ import annotations

import random

import aiohttp
import asyncpg
from aiohttp import web

from backend_api.auth.nonces import NonceLedger
from backend_api.auth.scopes import InternalScopes
from backend_api.auth.session import SessionCodec
from backend_api.crypto import Vault
from backend_api.facts import Claimed, ConfigRead, Enqueued, Ingested, Reported, Tenancy
from backend_api.gate.batcher import IngestBatcher
from backend_api.gate.bitbucket import CachedPermissions
from backend_api.gate.bitbucket_config import BitbucketConfigReader
from backend_api.outbox.floor import ClaimFloor
from backend_api.outbox.notifier import ActionNotifier
from backend_api.owner.ratelimit import SlidingWindow
from backend_api.settings import BackendSettings

SETTINGS = web.AppKey("settings", BackendSettings)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
NOTIFIER = web.AppKey("notifier", ActionNotifier)
CLAIM_FLOOR = web.AppKey("claim_floor", ClaimFloor)
NONCES = web.AppKey("nonces", NonceLedger)
INGEST = web.AppKey("ingest", IngestBatcher)
# What a handler hands the metrics (backend_api.facts; metrics.OBSERVERS reads them by route name).
INGESTED = web.RequestKey("ingested", Ingested)
CLAIMED = web.RequestKey("claimed", Claimed)
REPORTED = web.RequestKey("reported", Reported)
ENQUEUED = web.RequestKey("enqueued", Enqueued)
TENANCY = web.RequestKey("tenancy", Tenancy)
CONFIG_READ = web.RequestKey("config_read", ConfigRead)
RNG = web.AppKey("rng", random.Random)
# PRGATE_ENCRYPTION_KEY's vault; absent when the variable is not set (no Bitbucket tenant can be stored).
VAULT = web.AppKey("vault", Vault)
# Asks Bitbucket for an author's permission with the workspace's token, cached (gate.bitbucket).
BITBUCKET_PERMISSIONS = web.AppKey("bitbucket_permissions", CachedPermissions)
# The same question for the owner API and settings page: its own cache, kept only as long as GitHub's
# owner answers (github.app.PERMISSION_TTL_SECONDS), so a demoted admin loses the settings as soon.
BITBUCKET_OWNER_PERMISSIONS = web.AppKey("bitbucket_owner_permissions", CachedPermissions)
# Reads a Bitbucket repository's `.prgate.yml` with the workspace's token (gate.bitbucket_config).
BITBUCKET_CONFIG = web.AppKey("bitbucket_config", BitbucketConfigReader)
# Outbound HTTP of the backend (GitHub sign-in), one session for the app.
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
SESSIONS = web.AppKey("sessions", SessionCodec)
# Owner API access checks per session and minute (docs/security.md, "A signed-in stranger makes prgate mint and spend
# a victim installation's token").
OWNER_CHECKS = web.AppKey("owner_checks", SlidingWindow)
# Which caller's key opens which internal route (backend_api.http.routes.internal_scopes).
SCOPES = web.AppKey("internal_scopes", InternalScopes)
