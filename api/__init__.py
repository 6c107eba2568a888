"""HTTP API (FastAPI): REST, auth with organisation scope, web UI."""
