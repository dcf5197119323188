"""Streaming duplicate detection: pairs in on a topic, scores out on another."""
