"""The simulated providers' own HTML pages (their OAuth authorize screens): one plain document shape."""

from __future__ import annotations

import html

from aiohttp import web


def page(title: str, body: str, status: int = 200) -> web.Response:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}"
        "input,button{font-size:1rem;padding:.4rem;margin:.3rem 0}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=document, status=status, content_type="text/html")
