"""Share links and the embeddable chat (docs/embed.md): an agent shared as a public chat page
and a script widget, end-user tokens instead of API keys, conversations kept per end user."""
