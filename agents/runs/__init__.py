"""Agent runs: `executor` executes one (the Celery task calls it), `selectors` and `views`
serve the runs pages."""
