"""Plugins bundled with imhub, referenced from the server config by module path:

- `plugins.word_filter:WordFilter`: mask or refuse forbidden words in user text.
- `plugins.rate_limit:RateLimit`: a token bucket per tenant, hook and acting user.
- `plugins.audit_log:AuditLog`: every after-event as one JSON line in a file.

See docs/plugins.md for their config keys and for writing your own.
"""
