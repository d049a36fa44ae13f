"""An MCP client built on the official MCP Python SDK, for tests/mcp_interop.rs.

Run as ``python tests/mcp/client.py --server BIN --db DB --accepting URL
--closed URL``. It starts ``BIN mcp --db DB --protocol 0.3 --max-attempts 2
--backoff 10ms`` as a stdio subprocess through the SDK's ``stdio_client`` and ``ClientSession``, and then:

1. lists the tools, with their input and output schemas;
2. calls ``delegate_task_async`` to the accepting target (an agent that holds its
   answer until the test lets it go) and to a closed port;
3. asks ``check_task_status`` for both at once, and ``list_pending``, and prints
   ``{"phase": "queued", ...}`` as one JSON line; then waits for one line on its
   own stdin: the test releases the held agent in between, so the delivery runs
   while the client polls;
4. polls ``check_task_status`` until each delegation settles;
5. sends bad arguments (each must be a tool error, never a crash) and asks for
   an unknown id (``not_found``);
6. closes the session (the server's stdin), so the server drains and exits, and
   prints ``{"phase": "done", ...}`` with everything it saw.

The SDK validates every structured answer against the tool's output schema, so
an answer that does not match its schema fails the call, and the test with it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import anyio

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

POLL_LIMIT_SECONDS = 30.0


def emit(value: dict) -> None:
    print(json.dumps(value), flush=True)


def answer(result) -> dict:
    """A tool result as plain JSON: whether it is an error, its structured content
    and its text."""
    texts = [block.text for block in result.content if getattr(block, "type", None) == "text"]
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": texts,
    }


async def poll(session: ClientSession, delegation_id: str) -> dict:
    deadline = time.monotonic() + POLL_LIMIT_SECONDS
    polls = 0
    while True:
        polls += 1
        status = answer(await session.call_tool("check_task_status", {"id": delegation_id}))
        structured = status["structured"] or {}
        # A task of several attempts has settled when its latest attempt has.
        settled = structured.get("status") != "queued" and structured.get("latest_status") != "queued"
        if status["is_error"] or settled:
            status["polls"] = polls
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"{delegation_id} still queued after {POLL_LIMIT_SECONDS} s")
        await anyio.sleep(0.05)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--accepting", required=True)
    parser.add_argument("--closed", required=True)
    args = parser.parse_args()

    params = StdioServerParameters(
        command=args.server,
        args=["mcp", "--db", args.db, "--protocol", "0.3", "--timeout", "10",
              "--max-attempts", "2", "--backoff", "10ms"],
    )
    seen: dict = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            initialized = await session.initialize()
            seen["protocol_version"] = initialized.protocol_version
            seen["server"] = initialized.server_info.name
            tools = await session.list_tools()
            seen["tools"] = {
                tool.name: {
                    "input_schema": tool.input_schema,
                    "output_schema": tool.output_schema,
                }
                for tool in tools.tools
            }

            seen["receipts"] = {
                "accepting": answer(await session.call_tool(
                    "delegate_task_async",
                    {"target": args.accepting, "task": "review PR 42", "id": "mcp-accepting"},
                )),
                "closed": answer(await session.call_tool(
                    "delegate_task_async",
                    {"target": args.closed, "task": "review PR 43", "id": "mcp-closed"},
                )),
            }
            seen["while_held"] = answer(await session.call_tool(
                "check_task_status", {"id": "mcp-accepting"}))
            seen["pending_while_held"] = answer(await session.call_tool("list_pending", {}))
            seen["pending_older_than_an_hour"] = answer(await session.call_tool(
                "list_pending", {"older_than": 3600}))
            emit({"phase": "queued", "status": seen["while_held"]})
            # The test releases the agent's answer, then writes a line.
            await anyio.to_thread.run_sync(sys.stdin.readline)

            seen["settled"] = {
                "mcp-accepting": await poll(session, "mcp-accepting"),
                "mcp-closed": await poll(session, "mcp-closed"),
            }
            seen["not_found"] = answer(await session.call_tool(
                "check_task_status", {"id": "never-delegated"}))
            seen["pending_after"] = answer(await session.call_tool("list_pending", {}))

            bad = {
                "empty_id": ("check_task_status", {"id": ""}),
                "long_id": ("check_task_status", {"id": "x" * 257}),
                "missing_id": ("check_task_status", {}),
                "not_a_url": ("delegate_task_async", {"target": "not a url", "task": "t"}),
                "ftp_target": ("delegate_task_async", {"target": "ftp://127.0.0.1/a2a", "task": "t"}),
                "task_too_large": ("delegate_task_async",
                                   {"target": args.accepting, "task": "x" * (4 * 1024 * 1024)}),
                "unknown_protocol": ("delegate_task_async",
                                     {"target": args.accepting, "task": "t", "protocol": "2.0"}),
                "unknown_argument": ("delegate_task_async",
                                     {"target": args.accepting, "task": "t", "url": "x"}),
                "negative_older_than": ("list_pending", {"older_than": -1}),
                "id_taken": ("delegate_task_async",
                             {"target": args.accepting, "task": "review PR 42", "id": "mcp-accepting"}),
            }
            seen["bad"] = {
                name: answer(await session.call_tool(tool, arguments))
                for name, (tool, arguments) in bad.items()
            }
            try:
                await session.call_tool("no_such_tool", {})
                seen["unknown_tool"] = {"raised": None}
            except Exception as error:  # the SDK raises the JSON-RPC error
                seen["unknown_tool"] = {"raised": type(error).__name__, "message": str(error)}
            # Still serving after all of that.
            seen["after_bad"] = answer(await session.call_tool(
                "check_task_status", {"id": "mcp-closed"}))
    emit({"phase": "done", "seen": seen})


if __name__ == "__main__":
    anyio.run(main)
