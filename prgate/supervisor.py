"""`prgate up`: run every component as a child process and stop them all together."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger("prgate.up")


def _spawn(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log.info("starting %s", name)
    return subprocess.Popen([sys.executable, "-m", "prgate.cli", *args], env=env)


def run_stack(env: dict[str, str], *, workers: int) -> int:
    migrate = subprocess.run([sys.executable, "-m", "prgate.cli", "migrate"], env=env, check=False)
    if migrate.returncode != 0:
        log.error("migrations failed")
        return migrate.returncode
    children = {"backend": _spawn("backend", ["backend"], env)}
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = env.get("BACKEND_PORT", "8080")
    log.info("prgate is up: backend on http://127.0.0.1:%s (Ctrl-C stops everything)", port)
    code = 0
    while not stopping:
        for name, proc in children.items():
            if proc.poll() is not None:
                log.error("%s exited with %s; stopping the stack", name, proc.returncode)
                code = proc.returncode or 1
                stopping = True
        time.sleep(0.2)
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    log.info("stopped")
    return code
