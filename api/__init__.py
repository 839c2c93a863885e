"""The HTTP API: FastAPI app, routes, request and response schemas, auth, limits, docs."""
