"""Helpers shared by every tier of the tests: waiting on a condition with a deadline
(`waiting`), reading what a topic carries (`events`) and the bus fake several areas use
(`buses`). Fakes that belong to one area stay beside that area's tests."""
