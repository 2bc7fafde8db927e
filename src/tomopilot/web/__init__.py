"""The web monitor of the session archive (FastAPI, server-rendered pages, live push by SSE)."""
