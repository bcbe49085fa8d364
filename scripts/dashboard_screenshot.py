"""Take docs/img/dashboard.png: run `prgate up` (the demo, embedded services, a scratch data dir and ports of
its own), try the README's "try it yourself" steps against it, sign in to the dashboard as demo-operator in
headless Chromium and screenshot it.

    .venv/bin/python scripts/dashboard_screenshot.py [--output docs/img/dashboard.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

PORTS = {"BACKEND_PORT": "18951", "BOT_PORT": "18952", "SIMULATOR_PORT": "18953", "WORKER_METRICS_PORT": "18954"}
BACKEND = f"http://127.0.0.1:{PORTS['BACKEND_PORT']}"
SIMULATOR = f"http://127.0.0.1:{PORTS['SIMULATOR_PORT']}"


def call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def until(what: str, probe: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(what)


def try_it_yourself() -> None:
    """The README's steps, as written there."""
    call("POST", f"{SIMULATOR}/_sim/pulls", {
        "repo": "demo-org/widgets", "number": 4, "title": "My first change",
        "author": {"login": "you", "id": 6001, "type": "User"}, "author_association": "NONE", "webhook": "opened",
    })
    until("gate comment on #4", lambda: any(
        "/verify/" in c["body"] for c in call("GET", f"{SIMULATOR}/_sim/repos/demo-org/widgets/pulls/4/comments")))
    recheck = call("POST", f"{SIMULATOR}/_sim/repos/demo-org/widgets/pulls/4/comments",
                   {"body": "/prgate recheck", "user": {"login": "you", "id": 6001}, "webhook": True})
    [delivery] = recheck["deliveries"]
    if not 200 <= delivery["status_code"] < 300:
        raise RuntimeError(f"the receiver answered the /prgate recheck delivery with {delivery['status_code']}")


async def screenshot(output: Path) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                           args=["--no-sandbox", "--disable-gpu"])
        page = await browser.new_page(viewport={"width": 1280, "height": 460})
        await page.goto(f"{BACKEND}/dashboard")
        await page.get_by_role("link", name="Sign in with GitHub").click()
        await page.get_by_label("Username").fill("demo-operator")
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{BACKEND}/dashboard")
        await page.get_by_role("link", name="Challenges").click()
        await page.wait_for_url(f"{BACKEND}/dashboard/challenges")
        output.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(output), full_page=True)
        await browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/img/dashboard.png"))
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="prgate-shot-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PORTS, PRGATE_DATA_DIR=f"{scratch}/data", LOG_LEVEL="WARNING", LOG_FORMAT="text",
               PATH=env.get("PATH", "") + ":/usr/sbin")
    up = subprocess.Popen([sys.executable, "-m", "prgate.cli", "up"], env=env, stdout=subprocess.PIPE, text=True,
                          start_new_session=True)
    try:
        assert up.stdout is not None
        for line in up.stdout:
            print(line, end="")
            if line.startswith("prgate is up"):
                break
        else:
            return 1
        try_it_yourself()
        asyncio.run(screenshot(args.output))
        print(f"wrote {args.output}")
        return 0
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(60)


if __name__ == "__main__":
    sys.exit(main())
