"""Helpers for tests and CI fixtures: the test hub and tiny InternLM checkpoints.

The test hub (``local_hub.LocalHub``) is the mirror server of ``model_zoo.mirror`` with fault
injection (``faults``) and statistics (``hub_stats``) plugged in as hooks; ``hub_repos`` writes
repositories for it. Tiny checkpoints (``tiny*.py``, ``kquants``) are also user-facing:
``model-zoo dev make-tiny`` and ``model-zoo demo`` are built on them.
"""
