"""The model registry: registry.yaml, its strict schema, the name resolver and selection.

Pure: reads registry files and nothing else; no network, no torch.
"""
