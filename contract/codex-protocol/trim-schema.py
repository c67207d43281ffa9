#!/usr/bin/env python3
"""Trim Codex's App Server JSON Schema to the subset dispatch uses.

Usage:
    codex app-server generate-json-schema --out DIR
    python3 contract/codex-protocol/trim-schema.py DIR VERSION > contract/codex-protocol/codex-app-server.schema.json

Reads DIR/codex_app_server_protocol.schemas.json (the combined file: v1 types at
`#/definitions/X`, v2 types at `#/definitions/v2/X`), flattens both into one
`definitions` map (rewriting `#/definitions/v2/X` to `#/definitions/X`), keeps
the root types listed below plus everything they reference, and records which
wire method uses which type under `x-codex-methods`. Output is deterministic
(sorted keys) so a re-run with the same binary gives the same bytes.
"""

import json
import sys

# Client -> server requests dispatch sends: method -> (params type, result type).
CLIENT_REQUESTS = [
    "initialize",
    "thread/start",
    "thread/resume",
    "thread/read",
    "thread/list",
    "thread/name/set",
    "thread/archive",
    "thread/unarchive",
    "thread/goal/set",
    "thread/goal/get",
    "thread/goal/clear",
    "turn/start",
    "turn/steer",
    "turn/interrupt",
    "model/list",
    "config/read",
    "account/read",
    "account/rateLimits/read",
    "account/usage/read",
    "permissionProfile/list",
    "thread/turns/list",
    "thread/items/list",
    "thread/loaded/list",
    "thread/unsubscribe",
    "thread/inject_items",
    "thread/fork",
    "thread/revert",
    "thread/compact/start",
    "thread/delete",
    "review/start",
]

# Server -> client notifications dispatch interprets.
NOTIFICATIONS = [
    "error",
    "thread/started",
    "thread/status/changed",
    "thread/tokenUsage/updated",
    "thread/name/updated",
    "thread/goal/updated",
    "thread/goal/cleared",
    "turn/started",
    "turn/completed",
    "item/started",
    "item/completed",
    "item/agentMessage/delta",
    "serverRequest/resolved",
    "warning",
    "thread/archived",
    "thread/unarchived",
    "thread/compacted",
    "account/rateLimits/updated",
]

# Server -> client requests dispatch answers.
SERVER_REQUESTS = [
    "item/commandExecution/requestApproval",
    "item/fileChange/requestApproval",
]

EXTRA_ROOTS = ["Thread", "Turn", "ThreadItem", "UserInput", "Model", "RequestId"]


def rewrite(node):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/definitions/v2/"):
                value = "#/definitions/" + value[len("#/definitions/v2/"):]
            out[key] = rewrite(value)
        return out
    if isinstance(node, list):
        return [rewrite(v) for v in node]
    return node


def refs(node, found):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref[len("#/definitions/"):])
        for value in node.values():
            refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def variants(union):
    """method -> {params: type, ...} from a ClientRequest/ServerNotification/ServerRequest union."""
    out = {}
    for variant in union["oneOf"]:
        props = variant.get("properties", {})
        method = props["method"]["enum"][0]
        params = props.get("params", {})
        # Optional params are `anyOf: [{$ref}, {type: null}]`; the type is the `$ref`.
        params = next(
            (v["$ref"] for v in params.get("anyOf", []) if "$ref" in v), params.get("$ref")
        )
        out[method] = params[len("#/definitions/"):] if params else None
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: trim-schema.py SCHEMA_DIR CODEX_VERSION")
    schema_dir, version = sys.argv[1], sys.argv[2]
    with open(f"{schema_dir}/codex_app_server_protocol.schemas.json", encoding="utf-8") as f:
        combined = json.load(f)
    defs = dict(combined["definitions"])
    v2 = defs.pop("v2")
    for name, value in v2.items():
        if name in defs:
            # RequestId and AbsolutePathBuf appear in both halves with the same shape.
            continue
        defs[name] = value
    defs = {name: rewrite(value) for name, value in defs.items()}
    for value in defs.values():
        value.pop("$schema", None)

    client = variants(defs["ClientRequest"])
    notes = variants(defs["ServerNotification"])
    server = variants(defs["ServerRequest"])

    methods = {"clientRequests": {}, "serverNotifications": {}, "serverRequests": {}}
    roots = list(EXTRA_ROOTS)
    for method in CLIENT_REQUESTS:
        params = client[method]
        result = params.replace("Params", "Response") if params else None
        if result not in defs:
            sys.exit(f"no response type {result} for {method}")
        methods["clientRequests"][method] = {"params": params, "result": result}
        roots += [params, result]
    for method in NOTIFICATIONS:
        methods["serverNotifications"][method] = {"params": notes[method]}
        roots.append(notes[method])
    for method in SERVER_REQUESTS:
        params = server[method]
        result = params.replace("Params", "Response")
        methods["serverRequests"][method] = {"params": params, "result": result}
        roots += [params, result]

    keep = set()
    todo = [r for r in roots if r]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in defs:
            sys.exit(f"unresolved reference {name}")
        keep.add(name)
        found = set()
        refs(defs[name], found)
        todo.extend(found - keep)

    out = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "CodexAppServerProtocolDispatchSubset",
        "description": (
            f"Subset of the Codex App Server protocol (codex-cli {version}) used by dispatch. "
            "Generated by contract/codex-protocol/trim-schema.py from "
            "`codex app-server generate-json-schema`; do not edit by hand."
        ),
        "x-codex-version": version,
        "x-codex-methods": methods,
        "definitions": {name: defs[name] for name in sorted(keep)},
    }
    json.dump(out, sys.stdout, indent=2, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
