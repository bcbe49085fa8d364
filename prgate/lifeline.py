"""A child of `prgate up` exits when its supervisor dies, however it dies (docs/operations.md,
"Children of `prgate up`").

The children run in sessions of their own (a terminal's Ctrl-C reaches only the supervisor, which
stops them in order), so nothing else would stop them if the supervisor were SIGKILLed. Each child
asks the Linux kernel for a SIGTERM when its parent exits (`prctl(PR_SET_PDEATHSIG)`): its usual
graceful shutdown then runs. The child does it itself at start-up, not in a `preexec_fn`, which is
unsafe in a parent that may have threads.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import MutableMapping

SUPERVISOR_PID = "PRGATE_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

log = logging.getLogger("prgate.lifeline")


class SupervisorGone(Exception):
    """The supervisor died before this child could tie its life to it."""


def child_env(env: MutableMapping[str, str]) -> dict[str, str]:
    """The environment of a child of this process: it names its supervisor."""
    return {**env, SUPERVISOR_PID: str(os.getpid())}


def die_with_supervisor(environ: MutableMapping[str, str]) -> bool:
    """In a child started with `child_env`: SIGTERM when the supervisor exits. Returns whether the
    tie is in place (False outside `prgate up`, and, logged, where the platform has no such call);
    raises SupervisorGone when the supervisor is already dead."""
    # Popped: a grandchild (e.g. `pg_ctl`) is not a child of the supervisor and must not check it.
    value = environ.pop(SUPERVISOR_PID, "")
    if not value.isdigit():
        return False
    if not sys.platform.startswith("linux"):
        log.warning("this platform has no PR_SET_PDEATHSIG: this %s outlives a killed `prgate up`", sys.argv[0])
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d): this process outlives a killed `prgate up`",
                    ctypes.get_errno())
        return False
    # The supervisor may have died between our fork and the prctl: then the signal never comes.
    if os.getppid() != int(value):
        raise SupervisorGone(f"its supervisor `prgate up` (pid {value}) is gone")
    return True
