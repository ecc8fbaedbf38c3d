"""Hooks for the contract run (tests/contract/run).

A followed process log (`?follow=1` on `.../logs`) streams until the client
hangs up: it has no end for schemathesis to wait for. Such requests are sent
with the flag off; following is tested by tests/api.rs and tests/front_door.rs.
A followed job log ends with its job and is checked as it is.
"""

import schemathesis

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
