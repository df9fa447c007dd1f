from __future__ import annotations

from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import Provider, ProviderConfig
from agents.providers.offline import OfflineProvider
from agents.providers.openai import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    "offline": OfflineProvider,
    "anthropic": AnthropicProvider,
    "openai": OpenAIProvider,
    "openai_compatible": OpenAIProvider,  # Ollama, vLLM, LM Studio: same API, own base URL
}


def get_provider(config: ProviderConfig) -> Provider:
    try:
        provider_class = PROVIDERS[config.kind]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"Unknown provider kind '{config.kind}'. Known: {known}.") from None
    return provider_class(config)
