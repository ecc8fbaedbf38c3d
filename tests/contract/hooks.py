"""Hooks for the contract run (tests/contract/run).

A followed process log (`?follow=1` on `.../logs`) streams until the client
hangs up: it has no end for schemathesis to wait for. Such requests are sent
with the flag off; following is tested by tests/api/surface.rs and tests/api/front_door.rs.
A followed job log ends with its job and is checked as it is.

Uploads (`PUT .../actions/{action}`) send `application/wasm`: bytes, as
`application/octet-stream` is sent.
"""

import schemathesis
from hypothesis.internal import lambda_sources

# CPython 3.11 before 3.11.8 can fail `ast.parse` with "AST constructor
# recursion depth mismatch" (gh-106905) when hypothesis, deep in a stack,
# parses a module to describe a lambda for a strategy's repr. The
# description is only a name: fall back to a plain one.
_describe_lambda = lambda_sources.lambda_description


def _lambda_description(f):
    try:
        return _describe_lambda(f)
    except SystemError:
        return "lambda"


lambda_sources.lambda_description = _lambda_description

# An uploaded component is bytes, sent as they are.
schemathesis.serializer.alias("application/wasm", "application/octet-stream")

FOLLOWING = {"", "1", "true"}


def following(value):
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and v in FOLLOWING for v in values)


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    endless = path.startswith("/v1/projects/") and path.endswith("/logs")
    if endless and isinstance(case.query, dict) and following(case.query.get("follow")):
        case.query["follow"] = "0"
