"""Loopback fakes of third-party HTTP APIs, for tests that drive the real SDKs offline.

- `FakeAnthropic`: Anthropic's Messages API (for the `anthropic` SDK).
- `FakeOpenAI`: OpenAI's Chat Completions and Embeddings APIs (for the `openai` SDK).
- `FakeStripe`: Stripe's billing API subset and signed webhooks (for the `stripe` SDK).

See tests/fakes/README.md.
"""

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI, embedding_for
from tests.fakes.server import FakeServer, RecordedRequest, ToolCallSpec
from tests.fakes.stripe_api import FakeStripe

__all__ = [
    "FakeAnthropic",
    "FakeOpenAI",
    "FakeServer",
    "FakeStripe",
    "RecordedRequest",
    "ToolCallSpec",
    "embedding_for",
]
