"""Run POLAR's own ``RewardModelClient`` against a model-zoo reward server, in the client's venv.

Not a test module: test_server_polar_client.py starts it with that venv's interpreter as
``python polar_client_harness.py ARGS_JSON`` and reads one ``HARNESS-RESULT {json}`` line.

The client is InternLM's, unchanged: ``xtuner/utils/rm_utils.py`` from the xtuner wheel on PyPI.
(The POLAR repository's ``src/polar/reward_func.py`` holds the same class, sending the same
requests and reading the same answers; it is not on PyPI.) The module is loaded from its file
because importing the ``xtuner`` package would run its ``__init__``, which needs mmengine and
torch; ``rm_utils`` itself imports only ``requests`` and transformers' ``AutoTokenizer``. The
network is fenced to 127.0.0.0/8 first (the fence of ``client_harness.py``), so nothing the
client or transformers tries leaves the machine.

ARGS_JSON: ``tokenizer`` (a directory, the client's ``path``), ``data`` (a list of
``{prompt, reference, output[, wrapper]}``) and ``runs``, each ``{server_type,
server_address}``. The answer: ``module`` (the file the class came from), ``blocked``, and per
run ``texts`` (``client.encode(data)``: what the client sends), ``scores`` (``client(data)``)
and ``printed`` (what the client printed: it reports failures only there).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import traceback

from client_harness import BLOCKED, fence


def load_client_class() -> type:
    spec = importlib.util.find_spec("xtuner")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("xtuner is not installed in this environment")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "utils", "rm_utils.py")
    module_spec = importlib.util.spec_from_file_location("xtuner_rm_utils", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cls = module.RewardModelClient
    cls.harness_module_file = path
    return cls


def run(args: dict) -> dict:
    cls = load_client_class()
    runs = []
    for how in args["runs"]:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            client = cls(
                args["tokenizer"],
                server_type=how["server_type"],
                server_address=how["server_address"],
            )
            texts = client.encode(args["data"])
            scores = client(args["data"])
        runs.append({"texts": texts, "scores": scores, "printed": printed.getvalue()})
    return {"runs": runs, "module": cls.harness_module_file}


def main() -> int:
    args = json.loads(sys.argv[1])
    fence({})
    try:
        result = {"ok": True, **run(args)}
    except BaseException as exc:  # noqa: BLE001 - reported to the test as data
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc(),
        }
    result["blocked"] = sorted(set(BLOCKED))
    print("HARNESS-RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
