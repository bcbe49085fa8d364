"""Vendor the webhook request-body schemas prgate's fuzz tests need, with every `$ref` inlined.

Source: the npm package `@octokit/openapi-webhooks` (GitHub's official webhook OpenAPI
description), file `generated/api.github.com.json`, key `webhooks`. Each webhook's
`post.requestBody.content["application/json"].schema` is a `$ref` into `components.schemas`;
this script resolves those refs recursively (down to a depth cap, past which a ref becomes
`{}`: any JSON), drops annotation-only keywords (descriptions, titles, examples, `x-*`), and
writes one compact JSON file per webhook into tests/fixtures/octokit-webhooks-schemas/.

Regenerate (needs npm and network; the tests themselves need neither):

    cd /tmp && npm pack @octokit/openapi-webhooks && tar xzf octokit-openapi-webhooks-*.tgz
    .venv/bin/python scripts/extract_webhook_schemas.py /tmp/package/generated/api.github.com.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "octokit-webhooks-schemas"
WEBHOOKS = (
    "pull-request-opened",
    "pull-request-reopened",
    "pull-request-closed",
    "pull-request-synchronize",
    "pull-request-ready-for-review",
    "installation-created",
    "installation-deleted",
    "installation-suspend",
    "installation-unsuspend",
    "installation-repositories-added",
    "installation-repositories-removed",
)
# How many `$ref`s deep to inline before giving up with `{}` (schemas are self-referential,
# e.g. a repository's `template_repository` or a user's organization).
DEFAULT_DEPTH = 6
ANNOTATIONS = frozenset({"description", "title", "examples", "example", "externalDocs", "$comment"})


class Resolver:
    def __init__(self, document: dict[str, Any], max_depth: int) -> None:
        self.document = document
        self.max_depth = max_depth
        self.capped = 0

    def lookup(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ValueError(f"only local refs are supported: {ref}")
        node: Any = self.document
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def inline(self, node: Any, depth: int = 0) -> Any:
        if isinstance(node, list):
            return [self.inline(item, depth) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            if depth >= self.max_depth:
                self.capped += 1
                return {}
            target = self.inline(self.lookup(node["$ref"]), depth + 1)
            siblings = {k: v for k, v in node.items() if k != "$ref" and k not in ANNOTATIONS}
            if siblings:
                return {"allOf": [target, self.inline(siblings, depth)]}
            return target
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ANNOTATIONS or key.startswith("x-"):
                continue
            if key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(value, dict):
                # Keys here are property names, not keywords: keep them all (a property may be called "title").
                out[key] = {name: self.inline(sub, depth) for name, sub in value.items()}
            else:
                out[key] = self.inline(value, depth)
        return out


def extract(document: dict[str, Any], name: str, max_depth: int) -> tuple[dict[str, Any], int]:
    resolver = Resolver(document, max_depth)
    body = document["webhooks"][name]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema: dict[str, Any] = resolver.inline(body)
    return schema, resolver.capped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="path to generated/api.github.com.json from the npm package")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH, help="max nesting of inlined $refs")
    args = parser.parse_args(argv)

    document = json.loads(args.source.read_text())
    version = document.get("info", {}).get("version", "unknown")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"source": "@octokit/openapi-webhooks", "version": version,
                                "file": "generated/api.github.com.json", "depth": args.depth, "webhooks": {}}
    for name in WEBHOOKS:
        schema, capped = extract(document, name, args.depth)
        text = json.dumps(schema, separators=(",", ":"), sort_keys=True)
        (args.out / f"{name}.json").write_text(text + "\n")
        manifest["webhooks"][name] = {"bytes": len(text), "refs_capped": capped}
        print(f"{name}: {len(text)} bytes, {capped} refs capped at depth {args.depth}", file=sys.stderr)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
