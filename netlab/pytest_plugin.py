"""netlab's pytest plugin: fixtures for a running lab (filled in by the tester's-experience work)."""
