"""The local store: layout, manifests, cross-process locks, and verification."""
