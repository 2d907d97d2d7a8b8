"""Helpers for tests and CI fixtures: the local multi-protocol hub and tiny InternLM checkpoints.

Also user-facing: ``model-zoo serve-mirror`` and ``model-zoo dev make-tiny`` are built on these.
"""
