"""Quality gates: Great Expectations suites and the personal-data scanner."""
