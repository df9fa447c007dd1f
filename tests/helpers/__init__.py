"""Plain helpers for the tests, by topic; import them from here, never from a conftest. The
fixtures live in `tests/fixtures/`."""
