"""A2A agents built on the official A2A Python SDK, for the crate's interop tests.

Run as ``python tests/a2a/agent.py --record FILE``. It binds 127.0.0.1 on an
ephemeral port, prints ``LISTENING http://127.0.0.1:PORT`` (flushed) once it
serves, and hosts several agents on one port, each under its own path with its
own agent card at ``<path>/.well-known/agent-card.json``:

- ``/compat``: A2A 1.0 with the SDK's 0.3 compatibility layer enabled on the same
  JSON-RPC endpoint (``message/send`` and ``SendMessage`` both work); answers with
  a Message.
- ``/v1``: A2A 1.0 only (a 0.3 ``message/send`` gets JSON-RPC -32601); answers
  with a Message.
- ``/task``: 1.0 with 0.3 compat; answers with a Task that is still working.
- ``/reject``: 1.0 with 0.3 compat; answers with a Task in state rejected.
- ``/busy-twice``: 1.0 with 0.3 compat; answers its first two JSON-RPC POSTs
  with HTTP 503 and ``Retry-After: 1`` (recorded raw, as the hostile peers
  are), then, from the third on, is an SDK agent that answers with a Message.
  Only the 503 gate in front of it is not the SDK's.
- ``/busy-always``: the same behind a gate that answers every JSON-RPC POST
  with HTTP 503 and ``Retry-After: 1``: a target that never takes the task.

Everything A2A here is the SDK's own: ``AgentExecutor``, ``DefaultRequestHandler``,
``InMemoryTaskStore``, ``create_jsonrpc_routes`` and ``create_agent_card_routes``.
Only the hostile peers are plain Starlette routes:

- ``/proxy-html``: 200 with an HTML body, as a captive proxy would answer;
- ``/endless``: 200 headers, then a body that trickles forever;
- any other path: Starlette's own 404.

With ``--exit-with-stdin`` it exits as soon as its stdin closes, so a test process
that dies (or never drops its handle) cannot leave it running.

Every message an agent's executor receives is appended to the ``--record`` file
as one JSON line: what the peer saw (agent path, messageId, text, metadata, the
``A2A-Version`` header, the JSON-RPC method). The hostile peers record every POST
they get the same way, read from the raw JSON-RPC, so a test can tell whether
anything was posted to them at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading

import uvicorn

from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, StreamingResponse
from starlette.routing import Route

from a2a.helpers.proto_helpers import (
    get_message_text,
    new_task,
    new_text_message,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    TaskState,
)
from a2a.utils.constants import (
    AGENT_CARD_WELL_KNOWN_PATH,
    PROTOCOL_VERSION_0_3,
    PROTOCOL_VERSION_1_0,
    TransportProtocol,
)


class Recorder:
    """Appends what each agent saw to a JSON Lines file, one line per message."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def record(self, agent: str, context: RequestContext) -> None:
        message = context.message
        headers = context.call_context.state.get('headers', {})
        line = {
            'agent': agent,
            'message_id': message.message_id if message else None,
            'role': MessageToDict(message).get('role') if message else None,
            'text': get_message_text(message) if message else None,
            'metadata': MessageToDict(message.metadata)
            if message and message.HasField('metadata')
            else None,
            'a2a_version': headers.get('a2a-version'),
            'method': context.call_context.state.get('method'),
            'task_id': context.task_id,
            'context_id': context.context_id,
        }
        self._append(line)

    async def record_raw(self, agent: str, request: Request) -> None:
        """What a hostile peer (no SDK) was posted, read from the raw JSON-RPC."""
        try:
            body = json.loads(await request.body())
            message = body['params']['message']
        except (ValueError, KeyError, TypeError):
            body, message = {}, {}
        parts = message.get('parts') or []
        self._append(
            {
                'agent': agent,
                'message_id': message.get('messageId'),
                'role': message.get('role'),
                'text': '\n'.join(
                    p['text'] for p in parts if isinstance(p, dict) and 'text' in p
                ),
                'metadata': message.get('metadata'),
                'a2a_version': request.headers.get('a2a-version'),
                'method': body.get('method'),
                'task_id': None,
                'context_id': None,
            }
        )

    def _append(self, line: dict) -> None:
        with self._lock, open(self._path, 'a', encoding='utf-8') as out:
            out.write(json.dumps(line, sort_keys=True) + '\n')
            out.flush()


class RecordingAgent(AgentExecutor):
    """An SDK agent at ``path`` that records every message, then answers it."""

    def __init__(self, path: str, recorder: Recorder) -> None:
        self.path = path
        self.recorder = recorder

    async def execute(
        self, context: RequestContext, event_queue: EventQueue
    ) -> None:
        self.recorder.record(self.path, context)
        await self.answer(context, event_queue)

    async def answer(
        self, context: RequestContext, event_queue: EventQueue
    ) -> None:
        raise NotImplementedError

    async def cancel(
        self, context: RequestContext, event_queue: EventQueue
    ) -> None:
        raise NotImplementedError


async def open_task(
    context: RequestContext, event_queue: EventQueue
) -> TaskUpdater:
    """Opens a Task for the message, submitted; returns its updater."""
    task_id = str(context.task_id)
    context_id = str(context.context_id)
    await event_queue.enqueue_event(
        new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED)
    )
    return TaskUpdater(event_queue, task_id, context_id)


class MessageAgent(RecordingAgent):
    """Answers every message with a Message (the 'immediate response' workflow)."""

    async def answer(
        self, context: RequestContext, event_queue: EventQueue
    ) -> None:
        await event_queue.enqueue_event(
            new_text_message(
                f'ok: {context.get_user_input()}',
                context_id=context.context_id,
            )
        )


class TaskAgent(RecordingAgent):
    """Opens a Task and leaves it working (the 'long-running' workflow)."""

    async def answer(
        self, context: RequestContext, event_queue: EventQueue
    ) -> None:
        await (await open_task(context, event_queue)).start_work()


class RejectingAgent(RecordingAgent):
    """Opens a Task, then rejects it: it received the message and refused it."""

    async def answer(
        self, context: RequestContext, event_queue: EventQueue
    ) -> None:
        updater = await open_task(context, event_queue)
        await updater.reject(
            new_text_message(
                'I do not review pull requests.',
                context_id=updater.context_id,
                task_id=updater.task_id,
            )
        )


def agent_routes(
    base: str, path: str, executor: AgentExecutor, compat: bool
) -> list[Route]:
    """The SDK's JSON-RPC route at ``path`` and its card under ``path``."""
    url = f'{base}{path}'
    interfaces = [
        AgentInterface(
            url=url,
            protocol_binding=TransportProtocol.JSONRPC.value,
            protocol_version=PROTOCOL_VERSION_1_0,
        )
    ]
    if compat:
        interfaces.append(
            AgentInterface(
                url=url,
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_0_3,
            )
        )
    card = AgentCard(
        name=f'interop {path.strip("/")}',
        description=f'delegation-log interop peer at {path}',
        version='1.0.0',
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[
            AgentSkill(
                id='review',
                name='review',
                description='reviews what it is sent',
                tags=['test'],
            )
        ],
    )
    handler = DefaultRequestHandler(
        agent_executor=executor,
        task_store=InMemoryTaskStore(),
        agent_card=card,
    )
    return [
        *create_agent_card_routes(
            agent_card=card, card_url=f'{path}{AGENT_CARD_WELL_KNOWN_PATH}'
        ),
        *create_jsonrpc_routes(
            request_handler=handler, rpc_url=path, enable_v0_3_compat=compat
        ),
    ]


def proxy_html(recorder: Recorder):  # noqa: ANN201
    """A 200 that is no JSON-RPC at all, as a captive portal or proxy sends."""

    async def route(request: Request) -> HTMLResponse:
        if request.method == 'POST':
            await recorder.record_raw('/proxy-html', request)
        return HTMLResponse(
            '<!doctype html><html><body><h1>Proxy login</h1></body></html>'
        )

    return route


def endless(recorder: Recorder):  # noqa: ANN201
    """200 and headers at once, then a body that never ends."""

    async def trickle():  # noqa: ANN202
        while True:
            yield b' '
            await asyncio.sleep(0.5)

    async def route(request: Request) -> StreamingResponse:
        if request.method == 'POST':
            await recorder.record_raw('/endless', request)
        return StreamingResponse(trickle(), media_type='application/json')

    return route


class Busy:
    """ASGI middleware: the first ``times`` POSTs to ``path`` (every one, for
    ``None``) get 503 with ``Retry-After: 1``; every other request goes on to
    the app."""

    def __init__(self, app, path: str, recorder: Recorder, times) -> None:  # noqa: ANN001
        self.app = app
        self.path = path
        self.recorder = recorder
        self.times = times
        self.refused = 0
        self.lock = asyncio.Lock()

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if (
            scope.get('type') == 'http'
            and scope.get('method') == 'POST'
            and scope.get('path') == self.path
        ):
            async with self.lock:
                refuse = self.times is None or self.refused < self.times
                if refuse:
                    self.refused += 1
            if refuse:
                request = Request(scope, receive)
                await self.recorder.record_raw(self.path, request)
                await send(
                    {
                        'type': 'http.response.start',
                        'status': 503,
                        'headers': [
                            (b'retry-after', b'1'),
                            (b'content-type', b'text/plain'),
                        ],
                    }
                )
                await send(
                    {'type': 'http.response.body', 'body': b'busy, come back later'}
                )
                return
        await self.app(scope, receive, send)


def build_app(base: str, recorder: Recorder) -> Starlette:
    """The whole server: the SDK agents and the hostile peers."""
    routes: list[Route] = []
    routes += agent_routes(
        base, '/compat', MessageAgent('/compat', recorder), compat=True
    )
    routes += agent_routes(base, '/v1', MessageAgent('/v1', recorder), compat=False)
    routes += agent_routes(base, '/task', TaskAgent('/task', recorder), compat=True)
    routes += agent_routes(
        base, '/reject', RejectingAgent('/reject', recorder), compat=True
    )
    routes += agent_routes(
        base, '/busy-twice', MessageAgent('/busy-twice', recorder), compat=True
    )
    routes += agent_routes(
        base, '/busy-always', MessageAgent('/busy-always', recorder), compat=True
    )
    routes += [
        Route('/proxy-html', proxy_html(recorder), methods=['GET', 'POST']),
        Route('/endless', endless(recorder), methods=['GET', 'POST']),
    ]
    return Starlette(routes=routes)


async def serve(record: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    base = f'http://127.0.0.1:{port}'
    recorder = Recorder(record)
    app = Busy(build_app(base, recorder), '/busy-twice', recorder, 2)
    app = Busy(app, '/busy-always', recorder, None)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level='warning', lifespan='off')
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
            raise SystemExit('the server stopped before it started')
        await asyncio.sleep(0.02)
    print(f'LISTENING {base}', flush=True)
    await serving


def exit_with_stdin() -> None:
    """Ends the process once stdin reaches EOF, however its parent ended."""
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--record',
        required=True,
        help='append one JSON line per message an agent receives',
    )
    parser.add_argument(
        '--exit-with-stdin',
        action='store_true',
        help='exit when stdin closes: the parent (a test process) is gone',
    )
    args = parser.parse_args()
    if args.exit_with_stdin:
        threading.Thread(target=exit_with_stdin, daemon=True).start()
    try:
        asyncio.run(serve(args.record))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == '__main__':
    main()
