"""``python -m model_zoo.export.launch lmdeploy ARGS...``: LMDeploy's command line, with
model-zoo's configs registered.

LMDeploy reads a checkpoint's config through transformers' ``AutoConfig`` and has no plugin
entry point, so a process that must load an exported InternLM directory registers model-zoo's
config classes first, then hands its arguments to LMDeploy's own console script
(``lmdeploy = lmdeploy.cli:run``). Engines that spawn more Python processes of their own would
need the same registration there; for LMDeploy's single-GPU server the model is read in this one.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "lmdeploy":
        raise SystemExit("usage: python -m model_zoo.export.launch lmdeploy ARGS...")
    from .hf_config import register

    register()
    from lmdeploy.cli import run

    sys.argv = ["lmdeploy", *args[1:]]
    run()


if __name__ == "__main__":
    main()
