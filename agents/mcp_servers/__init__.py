"""A workspace's connections to remote MCP servers (writes in services, reads in selectors)."""
