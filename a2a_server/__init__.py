"""Agent-to-agent (A2A): agent cards and the JSON-RPC binding of the official `a2a-sdk`,
mapped onto ordinary agent runs (docs/a2a.md)."""
