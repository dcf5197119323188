"""Pure domain core: types, state machine, policies. No I/O lives here."""
