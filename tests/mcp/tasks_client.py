"""An MCP client on the official MCP Python SDK that declares the tasks extension
(``io.modelcontextprotocol/tasks``), for tests/mcp_interop.rs.

Run as ``python tests/mcp/tasks_client.py --server BIN --db DB --accepting URL
--closed URL``. The SDK (2.3.0) ships no tasks extension, but its extension
mechanism carries one: a ``ClientExtension`` whose identifier is advertised in
the client's capabilities, with a ``ResultClaim`` for the ``resultType: "task"``
answer of ``tools/call`` whose resolver polls ``tasks/get`` (a request the SDK
sends as it sends any typed request). Claims are active only on a 2026-07-28
connection (``Client``'s default ``mode="auto"`` probes ``server/discover``);
on a handshake-era connection the SDK does not advertise a claim-bearing
extension at all, and the server answers as it answers every client.

It starts ``BIN mcp --db DB --protocol 0.3 --max-attempts 2 --backoff 10ms``
through ``Client`` and then:

1. delegates to the accepting target (an agent that holds its answer) as a task,
   taking the task handle itself (``allow_claimed=True``), asks ``tasks/get``
   once, and prints ``{"phase": "working", ...}``; then waits for one line on its
   own stdin (the test releases the agent in between);
2. polls ``tasks/get`` until that task is terminal, and checks its result
   against the tool's output schema as the SDK checks any tool result;
3. delegates to a closed port through plain ``Client.call_tool``, which the
   claim's resolver finishes by polling ``tasks/get``;
4. asks ``tasks/get`` for an unknown id, and ``tasks/cancel``, each of which
   must be a JSON-RPC error, and ``check_task_status`` for both delegations;
5. closes the session (the server drains and exits) and prints
   ``{"phase": "done", ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, ClassVar, Literal

import anyio
from mcp_types import CallToolResult, RequestParams, Result
from mcp_types import Request as McpRequest

from mcp import StdioServerParameters
from mcp.client.client import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.shared.exceptions import MCPError

TASKS = "io.modelcontextprotocol/tasks"
POLL_LIMIT_SECONDS = 30.0


def emit(value: dict) -> None:
    print(json.dumps(value), flush=True)


class Task(Result):
    """The fields of a task that every answer about it carries."""

    task_id: str
    status: str
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    status_message: str | None = None


class CreatedTask(Task):
    """The answer of a task-augmented ``tools/call`` (``CreateTaskResult``)."""

    result_type: Literal["task"]


class DetailedTask(Task):
    """The answer of ``tasks/get``: the task, with its result once ``completed``."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskIdParams(RequestParams):
    task_id: str


class GetTask(McpRequest[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param: ClassVar[str | None] = "taskId"


class CancelTask(McpRequest[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param: ClassVar[str | None] = "taskId"


TERMINAL = {"completed", "failed", "cancelled"}


async def get_task(session, task_id: str) -> DetailedTask:
    return await session.send_request(GetTask(params=TaskIdParams(task_id=task_id)), DetailedTask)


async def poll(session, task_id: str, seen: list[str]) -> DetailedTask:
    """``tasks/get`` until the task is terminal; every status seen goes to ``seen``."""
    deadline = time.monotonic() + POLL_LIMIT_SECONDS
    while True:
        task = await get_task(session, task_id)
        seen.append(task.status)
        if task.status in TERMINAL:
            return task
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} still {task.status} after {POLL_LIMIT_SECONDS} s")
        await anyio.sleep(min(task.poll_interval_ms or 50, 50) / 1000)


class Tasks(ClientExtension):
    """The tasks extension, as far as this server needs it: a task answer to
    ``tools/call`` is finished by polling ``tasks/get`` to its result."""

    identifier = TASKS

    def __init__(self) -> None:
        self.polled: dict[str, list[str]] = {}

    async def resolve(self, created: CreatedTask, ctx: ClaimContext) -> CallToolResult:
        seen = self.polled.setdefault(created.task_id, [created.status])
        task = await poll(ctx.session, created.task_id, seen)
        if task.status != "completed" or task.result is None:
            raise RuntimeError(f"task {created.task_id} ended {task.status}: {task.error}")
        return CallToolResult.model_validate(task.result)

    def claims(self):
        return (ResultClaim(result_type="task", model=CreatedTask, resolve=self.resolve),)


def tool_answer(result: CallToolResult) -> dict:
    return {"is_error": bool(result.is_error), "structured": result.structured_content}


async def refused(send) -> dict:
    try:
        answer = await send
        return {"raised": None, "answer": repr(answer)}
    except MCPError as error:
        return {"raised": "MCPError", "code": error.error.code, "message": error.error.message,
                "data": error.error.data}


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
    tasks = Tasks()
    seen: dict = {}
    async with Client(params, extensions=[tasks]) as client:
        session = client.session
        seen["protocol_version"] = client.protocol_version
        seen["server_extensions"] = sorted((client.server_capabilities.extensions or {}).keys())
        listed = await client.list_tools()
        seen["delegate_output_schema"] = next(
            tool.output_schema for tool in listed.tools if tool.name == "delegate_task_async")

        # 1. The task handle itself, and the task working while the agent holds it.
        created = await session.call_tool(
            "delegate_task_async",
            {"target": args.accepting, "task": "review PR 42", "id": "mcp-task-accepting"},
            allow_claimed=True,
        )
        seen["created"] = created.model_dump(by_alias=True, mode="json")
        seen["while_held"] = (await get_task(session, created.task_id)).model_dump(
            by_alias=True, mode="json", exclude_none=True)
        emit({"phase": "working", "task": seen["while_held"]})
        await anyio.to_thread.run_sync(sys.stdin.readline)

        # 2. Polled to its end; its result checked against the tool's output schema.
        polled: list[str] = []
        done = await poll(session, created.task_id, polled)
        seen["accepting"] = done.model_dump(by_alias=True, mode="json", exclude_none=True)
        seen["accepting_polled"] = polled
        result = CallToolResult.model_validate(done.result)
        await session.validate_tool_result("delegate_task_async", result)
        seen["accepting_result"] = tool_answer(result)

        # 3. The SDK's own call_tool, finished by the claim's resolver.
        offline = await client.call_tool(
            "delegate_task_async",
            {"target": args.closed, "task": "review PR 43", "id": "mcp-task-closed"},
        )
        seen["closed_result"] = tool_answer(offline)
        seen["closed_polled"] = tasks.polled.get("mcp-task-closed")

        # 4. Errors, and the same answers through check_task_status.
        seen["unknown_task"] = await refused(get_task(session, "never-delegated"))
        seen["empty_task_id"] = await refused(get_task(session, ""))
        seen["cancel"] = await refused(session.send_request(
            CancelTask(params=TaskIdParams(task_id="mcp-task-accepting")), Result))
        seen["check"] = {
            task_id: tool_answer(await client.call_tool("check_task_status", {"id": task_id}))
            for task_id in ("mcp-task-accepting", "mcp-task-closed")
        }
    emit({"phase": "done", "seen": seen})


if __name__ == "__main__":
    anyio.run(main)
