"""Notification channels and ledgers."""
