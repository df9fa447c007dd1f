"""Outbound HTTP from agents: the workspace allowlist of hosts."""
