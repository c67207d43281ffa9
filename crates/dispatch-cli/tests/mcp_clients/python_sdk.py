"""Drive `dispatch mcp` with the official MCP Python SDK (the `mcp` package), in both protocol
eras: the 2025 `initialize` handshake (`legacy`) and the 2026 `server/discover` era (`auto`).

Usage: python python_sdk.py PLAN.json
  PLAN is {"command": [argv...], "env": {...}, "calls": [{"tool", "arguments"}...]}.
  Prints one JSON report on stdout:
    {"<era>": {"version", "tools": [{"name", "readOnlyHint"}...],
               "calls": [{"tool", "is_error", "structured", "error", "exception"}...]}}
  The SDK validates every structured result against the tool's outputSchema; a mismatch is
  reported as that call's `exception`.
"""

import json
import sys

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters


async def run(plan, mode):
    server = StdioServerParameters(
        command=plan["command"][0], args=plan["command"][1:], env=plan["env"]
    )
    report = {"calls": []}
    async with Client(server, mode=mode) as client:
        report["version"] = client.session._negotiated_version
        listed = await client.list_tools()
        report["tools"] = [
            {
                "name": tool.name,
                "readOnlyHint": bool(tool.annotations and tool.annotations.read_only_hint),
            }
            for tool in listed.tools
        ]
        for call in plan["calls"]:
            entry = {"tool": call["tool"]}
            try:
                result = await client.call_tool(call["tool"], call["arguments"])
                entry["is_error"] = bool(result.is_error)
                entry["structured"] = result.structured_content is not None
                if result.is_error:
                    entry["error"] = json.loads(result.content[0].text)["error"]
            except Exception as err:  # reported, and failed by the Rust test
                entry["exception"] = f"{type(err).__name__}: {err}"
            report["calls"].append(entry)
    return report


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        plan = json.load(f)
    out = {mode: anyio.run(run, plan, mode) for mode in ("legacy", "auto")}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
