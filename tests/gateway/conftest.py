"""The gateway's tests use tests/conftest.py's server, which runs with the gateway's
uvicorn options as `imhub serve` does."""
