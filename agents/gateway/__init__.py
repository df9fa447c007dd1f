"""The provider gateway and what every model call goes through: aliases, budgets, the
circuit breaker, the per-process config cache, replay of recorded calls, token estimates, and
the workspace's provider credentials. `calls` is the entry point (`gateway_complete`)."""
