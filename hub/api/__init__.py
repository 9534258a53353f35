"""The HTTP API: OpenIM-style POST routes with a JSON envelope."""
