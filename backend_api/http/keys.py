"""Typed application keys: the backend's explicit dependencies."""

from __future__ import annotations

import random

import asyncpg
from aiohttp import web

from backend_api.outbox.notifier import ActionNotifier
from backend_api.settings import BackendSettings

SETTINGS = web.AppKey("settings", BackendSettings)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
NOTIFIER = web.AppKey("notifier", ActionNotifier)
RNG = web.AppKey("rng", random.Random)
