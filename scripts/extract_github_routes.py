#!/usr/bin/env python3
"""Extract every (method, path) of GitHub's REST OpenAPI description into a small fixture.

The simulator's conformance test (tests/unit/simulator/test_github_api.py) checks that each route the
simulator serves exists in GitHub's API. Regenerate after updating the spec:

    cd /tmp && npm pack @octokit/openapi && tar xzf octokit-openapi-*.tgz
    python scripts/extract_github_routes.py /tmp/package/generated/api.github.com.json

(the default spec path is the one above; the output defaults to tests/fixtures/github_openapi_routes.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = Path("/tmp/package/generated/api.github.com.json")
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "github_openapi_routes.json"


def extract_routes(spec: dict[str, object]) -> list[dict[str, str]]:
    paths = spec.get("paths")
    if not isinstance(paths, dict):
        raise ValueError("not an OpenAPI document: no 'paths' object")
    routes = {
        (method.upper(), path)
        for path, operations in paths.items()
        if isinstance(operations, dict)
        for method in operations
        if method in HTTP_METHODS
    }
    return [{"method": method, "path": path} for method, path in sorted(routes, key=lambda r: (r[1], r[0]))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC, help="api.github.com.json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.spec.is_file():
        print(f"spec not found: {args.spec} (see this script's docstring)", file=sys.stderr)
        return 1
    spec = json.loads(args.spec.read_text())
    routes = extract_routes(spec)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # One operation per line: small, and diffs show exactly which operations GitHub added or removed.
    lines = ",\n".join(json.dumps(route) for route in routes)
    args.out.write_text(f"[\n{lines}\n]\n")
    version = spec.get("info", {}).get("version", "?") if isinstance(spec.get("info"), dict) else "?"
    print(f"wrote {len(routes)} operations from spec version {version} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
