"""Remote MCP servers as tool sources for agents (docs/mcp.md, "Agents using MCP servers")."""
