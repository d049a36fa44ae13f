"""Captures what agents built on the official A2A SDK answer, as fixtures.

Run from the repository root with the peers' venv (``bash .ci/python-peers``):

    target/py/a2a/bin/python tests/a2a/capture.py

It starts ``tests/a2a/agent.py``, sends each request below with httpx, and writes
every answer body byte for byte to ``tests/fixtures/a2a/<case>.<ext>``, then
``tests/fixtures/a2a/README.md`` listing the request and the HTTP status of each.
The requests are the crate's own envelopes (delegation ``task-1`` from
``planner``). Generated ids, timestamps and the port change on every run; the
shapes do not.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile

import httpx


ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / 'tests' / 'fixtures' / 'a2a'

METADATA = {'delegationId': 'task-1', 'source': 'planner'}

V0_3 = {
    'jsonrpc': '2.0',
    'id': 'task-1',
    'method': 'message/send',
    'params': {
        'message': {
            'kind': 'message',
            'messageId': 'task-1',
            'role': 'user',
            'parts': [{'kind': 'text', 'text': 'review PR 42'}],
            'metadata': METADATA,
        }
    },
}

V1_0 = {
    'jsonrpc': '2.0',
    'id': 'task-1',
    'method': 'SendMessage',
    'params': {
        'message': {
            'messageId': 'task-1',
            'role': 'ROLE_USER',
            'parts': [{'text': 'review PR 42'}],
            'metadata': METADATA,
        }
    },
}

JSON = {'Content-Type': 'application/json'}
A2A_1_0 = {**JSON, 'A2A-Version': '1.0'}

# (case, file extension, HTTP method, path, headers, body name, what it shows)
CASES = [
    ('v0_3_compat', 'json', 'POST', '/compat', JSON, 'v0.3',
     '0.3 through the SDK\'s compat layer: `result.kind` = `message`'),
    ('v1_0_compat', 'json', 'POST', '/compat', A2A_1_0, 'v1.0',
     '1.0: `result.message`, no `kind`'),
    ('v0_3_v1', 'json', 'POST', '/v1', JSON, 'v0.3',
     'the bug: a 1.0-only agent refuses 0.3 with JSON-RPC -32601 in a 200'),
    ('v1_0_v1', 'json', 'POST', '/v1', A2A_1_0, 'v1.0',
     '1.0: `result.message`'),
    ('v0_3_task', 'json', 'POST', '/task', JSON, 'v0.3',
     '0.3 Task: `result.kind` = `task`, `status.state` = `working`'),
    ('v1_0_task', 'json', 'POST', '/task', A2A_1_0, 'v1.0',
     '1.0 Task: `result.task`, `status.state` = `TASK_STATE_WORKING`'),
    ('v0_3_reject', 'json', 'POST', '/reject', JSON, 'v0.3',
     '0.3 Task in state `rejected`, with the agent\'s message'),
    ('v1_0_reject', 'json', 'POST', '/reject', A2A_1_0, 'v1.0',
     '1.0 Task in state `TASK_STATE_REJECTED`, with the agent\'s message'),
    ('card_compat', 'json', 'GET', '/compat/.well-known/agent-card.json', {}, None,
     '1.0 card listing a 1.0 and a 0.3 interface; the SDK adds the 0.3 '
     'top-level `url`, `protocolVersion`, `preferredTransport` for the 0.3 one'),
    ('card_v1', 'json', 'GET', '/v1/.well-known/agent-card.json', {}, None,
     '1.0-only card: `supportedInterfaces` only, no 0.3 top-level fields'),
    ('v1_0_wrong_version_2_0', 'json', 'POST', '/v1',
     {**JSON, 'A2A-Version': '2.0'}, 'v1.0',
     '`A2A-Version: 2.0`: -32009 VersionNotSupported, `data` an ErrorInfo list'),
    ('v1_0_no_version_header', 'json', 'POST', '/v1', JSON, 'v1.0',
     '`SendMessage` without the header is taken as 0.3: -32009'),
    ('v0_3_with_version_header_1_0', 'json', 'POST', '/compat', A2A_1_0, 'v0.3',
     '`message/send` with `A2A-Version: 1.0`: the compat layer answers -32603 '
     '(internal error), `data` null'),
    ('not_json', 'json', 'POST', '/v1', A2A_1_0, 'not JSON (`xx`)',
     'a body that is not JSON: -32700 with `id` null'),
    ('proxy_html', 'html', 'POST', '/proxy-html', A2A_1_0, 'v1.0',
     'a hostile peer: 200 with an HTML page (a plain Starlette route, not the SDK)'),
    ('unknown_path', 'txt', 'POST', '/nope', A2A_1_0, 'v1.0',
     'no route: Starlette\'s own 404 `Not Found`'),
    ('card_at_origin', 'txt', 'GET', '/.well-known/agent-card.json', {}, None,
     'no card at the origin: each agent\'s card is under its own path only'),
]

BODIES = {'v0.3': V0_3, 'v1.0': V1_0, 'not JSON (`xx`)': 'xx'}


def start_agent(record: pathlib.Path) -> tuple[subprocess.Popen, str]:
    agent = subprocess.Popen(  # noqa: S603
        [sys.executable, str(ROOT / 'tests' / 'a2a' / 'agent.py'),
         '--record', str(record)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert agent.stdout is not None
    line = agent.stdout.readline().strip()
    if not line.startswith('LISTENING '):
        agent.kill()
        raise SystemExit(f'agent did not start: {line!r}')
    return agent, line.removeprefix('LISTENING ')


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        agent, base = start_agent(pathlib.Path(tmp) / 'seen.jsonl')
        try:
            rows = capture(base)
        finally:
            agent.terminate()
            agent.wait(timeout=10)
    write_readme(base, rows)


def capture(base: str) -> list[tuple]:
    rows = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for case, ext, method, path, headers, body, shows in CASES:
            content = None
            if body is not None:
                sent = BODIES[body]
                content = (
                    sent
                    if isinstance(sent, str)
                    else json.dumps(sent, separators=(',', ':'))
                )
            answer = client.request(method, path, headers=headers, content=content)
            name = f'{case}.{ext}'
            (OUT / name).write_bytes(answer.content)
            rows.append((name, method, path, headers, body, answer, shows))
            print(f'{answer.status_code} {method} {path} -> {name}')
    return rows


def write_readme(base: str, rows: list[tuple]) -> None:
    lines = [
        '# Answers of agents built on the official A2A Python SDK',
        '',
        'Captured by `tests/a2a/capture.py` from `tests/a2a/agent.py` on '
        '`a2a-sdk` 1.3.0 (every package pinned in `tests/a2a/requirements.txt`).',
        'Each file is an answer body exactly as the server sent it, byte for byte.',
        f'The server ran at `{base}`; ids, context ids, timestamps and the port',
        'change on every capture, nothing else does. Every request has the',
        'JSON-RPC id and messageId `task-1`. Regenerate with',
        '`target/py/a2a/bin/python tests/a2a/capture.py`.',
        '',
        '| file | request | headers | body | HTTP status | content type | what it shows |',
        '| --- | --- | --- | --- | --- | --- | --- |',
    ]
    for name, method, path, headers, body, answer, shows in rows:
        sent_headers = ', '.join(
            f'`{k}: {v}`' for k, v in headers.items()
        ) or '(none)'
        lines.append(
            f'| `{name}` | `{method} {path}` | {sent_headers} | {body or "(none)"} '
            f'| {answer.status_code} | `{answer.headers.get("content-type", "")}` '
            f'| {shows} |'
        )
    lines += [
        '',
        'The request bodies, shown indented here (they were sent compact, no spaces):',
        '',
        '`v0.3`:',
        '',
        '```json',
        json.dumps(V0_3, indent=2),
        '```',
        '',
        '`v1.0`:',
        '',
        '```json',
        json.dumps(V1_0, indent=2),
        '```',
        '',
        'Not captured as a file: `POST /endless` answers 200 with',
        '`content-type: application/json`, chunked, then sends one space every',
        '0.5 s for ever; a client must end it with its own deadline.',
        '',
    ]
    (OUT / 'README.md').write_text('\n'.join(lines), encoding='utf-8')


if __name__ == '__main__':
    main()
