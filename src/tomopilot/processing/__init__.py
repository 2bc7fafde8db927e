"""Preprocessing pipelines: motion correction, CTF, microED conversion, on an Executor."""
