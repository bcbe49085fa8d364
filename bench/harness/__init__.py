"""What every benchmark shares, so that each `bench/<name>.py` holds only its scenario.

* `cli`: the flags every benchmark takes (`--quick`, `--write-docs`, `--wait-quiet`), the command
  line a report quotes, SIGTERM as Ctrl-C, and printing / publishing a report.
* `quiet`: waiting until a shared machine is idle, and re-measuring what other load disturbed.
* `cpu`: CPU accounting from /proc (one process, groups of processes, the whole machine).
* `db`: throwaway PostgreSQL databases and the pids that serve them.
* `stack`: components as separate OS processes that die with the benchmark.
* `backend`: the real backend under test (a process or in this event loop), signed internal
  calls to it, and seeding its outbox.
* `prometheus`: the components' own /metrics, parsed and differenced.
* `report`: markdown tables, the machine line, and rewriting a section of docs/benchmarks.md.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
