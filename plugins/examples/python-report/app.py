"""Example custom action in Python: what the project runs and at which revision.

It shows what most plugins need: declared params with defaults, the
`processes` and `git` imports, print() as the job log, and a typed error
(`Err(Error_...)`) that the caller sees as the job's error kind.

Build it with componentize-py (see README.md); the module must be called
`app` and define `Action`, the export of the `action-plugin` world.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.action import ActionMeta, ParamSpec
from wit_world.imports import git, processes
from wit_world.imports.bosun_plugin_types import Error_Invalid, Error_NotFound

PARAMS = [
    ParamSpec("process", "Only the processes of this name (all when empty)", False, ""),
    ParamSpec("max_restarts", "Fail when a process restarted more often than this", False, "3"),
]


class Action(exports.Action):
    def describe(self) -> ActionMeta:
        return ActionMeta("report", "The project's revision and its processes' health", PARAMS)

    def run(self, params: list[tuple[str, str]]) -> str:
        given = dict(params)
        values = {p.name: given.get(p.name, p.default) for p in PARAMS}
        try:
            max_restarts = int(values["max_restarts"])
        except ValueError:
            raise Err(Error_Invalid(f"param `max_restarts` is not a number: {values['max_restarts']!r}"))
        name = values["process"]

        table = [p for p in processes.list() if not name or p.name == name]
        if name and not table:
            raise Err(Error_NotFound(f"the project has no process called `{name}`"))
        repo = git.info()
        print(f"revision {repo.revision[:12]} on {repo.branch or '(detached)'}")
        rows = []
        for p in table:
            state = p.state.name.lower()
            print(f"{p.name}#{p.instance}: {state}, pid {p.pid}, {p.restarts} restarts")
            rows.append({"name": p.name, "instance": p.instance, "state": state,
                         "pid": p.pid, "restarts": p.restarts})
        unstable = [r for r in rows if r["restarts"] > max_restarts]
        return json.dumps({
            "revision": repo.revision,
            "branch": repo.branch,
            "dirty": repo.dirty,
            "processes": rows,
            "healthy": not unstable,
        })
