"""Preprocessing pipelines: motion correction, CTF estimation, microED conversion, on an Executor."""
