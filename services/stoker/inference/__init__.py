"""Models, compile backends and the port the router calls them through."""
