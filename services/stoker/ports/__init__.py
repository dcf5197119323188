"""Small protocols for every kind of I/O. Adapters live in stoker.adapters."""
