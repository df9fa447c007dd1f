"""LLM providers behind one small interface (`base.Provider`): complete, stream, tool calls,
normalised usage and stop reasons. One module per provider; `registry.get_provider` builds one
from a configuration."""
