"""`/api/docs`: the public OpenAPI document rendered on the server as one HTML page.

No Swagger UI or Redoc bundle: those load scripts (from a CDN, or a vendored megabyte), and the
backend's pages allow no script at all (templates.SECURITY_HEADERS) and must work offline. The page
lists every public operation — method, path, summary, parameters, request body, responses — and
every schema with its fields, types, constraints and descriptions, linked to each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from backend_api.web import templates as t

_REF = "#/components/schemas/"
_CONSTRAINTS = (
    ("minimum", "≥ {}"), ("maximum", "≤ {}"), ("exclusiveMinimum", "> {}"), ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} characters"), ("maxLength", "at most {} characters"),
    ("minItems", "at least {} items"), ("maxItems", "at most {} items"), ("pattern", "matches {}"),
    ("format", "format {}"),
)

_CSS = """
main{max-width:64rem}
.op{border:1px solid #d0d7de;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
.verb{display:inline-block;min-width:3.5rem;font-weight:600;font-family:ui-monospace,monospace}
.path{font-family:ui-monospace,monospace}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
code{font-family:ui-monospace,monospace;font-size:.85rem}
.muted{color:#59636e}
"""


def _schema_name(ref: str) -> str:
    return ref.removeprefix(_REF)


def type_html(schema: Mapping[str, Any]) -> str:
    """A schema's type in one line of markup: links to named schemas, `a | b` for unions."""
    if "$ref" in schema:
        name = _schema_name(str(schema["$ref"]))
        return f'<a href="#schema-{t.esc(name)}">{t.esc(name)}</a>'
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " | ".join(type_html(s) for s in schema[union])
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return type_html(schema["allOf"][0])
    if "enum" in schema:
        return " | ".join(f"<code>{t.esc(_literal(v))}</code>" for v in schema["enum"])
    if "const" in schema:
        return f"<code>{t.esc(_literal(schema['const']))}</code>"
    kind = schema.get("type")
    if kind == "array":
        return f"array of {type_html(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return f"object of {type_html(schema['additionalProperties'])}"
    if isinstance(kind, list):
        return " | ".join(t.esc(k) for k in kind)
    return t.esc(kind or "any")


def _literal(value: object) -> str:
    return "null" if value is None else f'"{value}"' if isinstance(value, str) else str(value).lower()


def _constraints(schema: Mapping[str, Any]) -> str:
    parts = [text.format(schema[key]) for key, text in _CONSTRAINTS if key in schema]
    if "default" in schema:
        parts.append(f"default {_literal(schema['default'])}")
    for union in ("anyOf", "oneOf"):
        for option in schema.get(union, ()):
            parts += [text.format(option[key]) for key, text in _CONSTRAINTS if key in option]
    return "; ".join(parts)


def schema_html(name: str, schema: Mapping[str, Any]) -> str:
    head = f'<section id="schema-{t.esc(name)}"><h3>{t.esc(name)}</h3>'
    if schema.get("description"):
        head += f"<p>{t.esc(schema['description'])}</p>"
    properties: Mapping[str, Any] = schema.get("properties", {})
    if not properties:
        return head + f"<p>{type_html(schema)}</p></section>"
    required = set(schema.get("required", ()))
    rows = "".join(
        f"<tr><td><code>{t.esc(field)}</code>{'' if field in required else ' <span class=muted>optional</span>'}"
        f"</td><td>{type_html(spec)}</td><td>{t.esc(_constraints(spec))}</td>"
        f"<td>{t.esc(spec.get('description', ''))}</td></tr>"
        for field, spec in properties.items()
    )
    extra = "" if schema.get("additionalProperties", True) is not False else (
        "<p class=muted>Other fields are refused.</p>")
    return (head + "<table><tr><th>Field</th><th>Type</th><th>Constraints</th><th>Description</th></tr>"
            f"{rows}</table>{extra}</section>")


def operation_html(path: str, method: str, op: Mapping[str, Any]) -> str:
    anchor = f"op-{op['operationId']}"
    parts = [
        f'<section class=op id="{t.esc(anchor)}"><h3><span class=verb>{t.esc(method.upper())}</span> '
        f"<span class=path>{t.esc(path)}</span></h3><p>{t.esc(op.get('summary', ''))}</p>"
    ]
    params = op.get("parameters", ())
    if params:
        parts.append("<p>Path parameters: " + ", ".join(
            f"<code>{t.esc(p['name'])}</code> ({type_html(p.get('schema', {}))}"
            f"{', ' + t.esc(_constraints(p['schema'])) if _constraints(p.get('schema', {})) else ''})"
            for p in params) + "</p>")
    body = op.get("requestBody")
    if body:
        parts.append(f"<p>Request body (JSON): {type_html(body['content']['application/json']['schema'])}</p>")
    if op.get("security"):
        parts.append("<p class=muted>Signed request (X-Prgate-Signature).</p>")
    responses = "".join(
        f"<tr><td>{t.esc(code)}</td><td>{type_html(answer['content']['application/json']['schema'])}</td></tr>"
        for code, answer in op.get("responses", {}).items()
    )
    parts.append(f"<table><tr><th>Status</th><th>Body (JSON)</th></tr>{responses}</table></section>")
    return "".join(parts)


def render_reference(doc: Mapping[str, Any]) -> str:
    """The body of the page for an OpenAPI 3.1 document as `openapi_document()` builds it."""
    operations = [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]
    index = "".join(
        f'<li><a href="#op-{t.esc(op["operationId"])}"><code>{t.esc(method.upper())} {t.esc(path)}</code></a> '
        f"— {t.esc(op.get('summary', ''))}</li>"
        for path, method, op in operations
    )
    schemas: Mapping[str, Any] = doc.get("components", {}).get("schemas", {})
    return (
        f"<style>{_CSS}</style>"
        "<p>Every public operation of this prgate backend, generated from the same route table as "
        '<a href="/openapi.json"><code>/openapi.json</code></a> (OpenAPI 3.1: load it into any client '
        "generator). Errors answer <code>ErrorBody</code>. The owner API needs a GitHub sign-in "
        "(<code>/auth/github/login</code>) and, on writes, the <code>X-CSRF-Token</code> from "
        "<code>GET /api/v1/session</code>.</p>"
        f"<h2>Operations</h2><ul>{index}</ul>"
        + "".join(operation_html(path, method, op) for path, method, op in operations)
        + "<h2>Schemas</h2>"
        + "".join(schema_html(name, schemas[name]) for name in sorted(schemas))
    )


def api_reference_page(doc: Mapping[str, Any]) -> web.Response:
    return t.page(str(doc["info"]["title"]) + " reference", render_reference(doc))
