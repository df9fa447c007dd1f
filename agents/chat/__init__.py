"""Conversations with agents, streamed over the websocket."""
