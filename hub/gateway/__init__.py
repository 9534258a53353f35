"""The WebSocket gateway (CONTRACT 3): connections, frames, pushes, kicks, keep-alive."""

from .gateway import PATH, Gateway
from .protocol import uvicorn_options

__all__ = ["PATH", "Gateway", "uvicorn_options"]
