"""The ``model-zoo`` command line: parses arguments, calls the Python API, formats results.

Each ``cmd_*`` module registers its commands; none imports torch at module level.
"""
