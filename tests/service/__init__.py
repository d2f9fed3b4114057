"""The HTTP service against real Redis and real uvicorn."""
