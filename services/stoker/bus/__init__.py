"""Delivery rules shared by every bus adapter."""
