"""Webhook delivery: transport, signing and the SSRF guard."""
