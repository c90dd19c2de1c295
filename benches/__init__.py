"""pytest-benchmark suites (a package, so their module names do not clash with spec_tests/)."""
