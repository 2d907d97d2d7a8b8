"""Hub adapters, one module per hub protocol; each turns a repository id into a Manifest.

``catalog`` holds static per-hub facts; ``base`` the Manifest types shared with the engine.
"""
