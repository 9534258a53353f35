"""imhub: an instant-messaging server whose every event reaches the app's business backend."""

__version__ = "0.1.0"
