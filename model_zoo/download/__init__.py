"""The download engine: parallel, ranged, resumable, hash-while-streaming, multi-source."""
