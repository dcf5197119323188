"""Helpers shared by every tier of the tests: waiting on conditions with a deadline, reading
what a topic carries, and DynamoDB Local housekeeping. Fakes that belong to one area stay
beside that area's tests; those several areas use live here."""
