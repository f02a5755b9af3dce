"""The kiosk's web face: HTTP routes, the /ws protocol and the SSE fallback."""
