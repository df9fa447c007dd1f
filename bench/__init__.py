"""Benchmarks. Each script starts what it needs and works in a database of its own."""
