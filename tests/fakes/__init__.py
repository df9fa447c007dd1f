"""Loopback fakes of third-party HTTP APIs, for tests that drive the real SDKs offline.

- `FakeAnthropic`: Anthropic's Messages API (for the `anthropic` SDK).
- `FakeOpenAI`: OpenAI's Chat Completions and Embeddings APIs (for the `openai` SDK).

See tests/fakes/README.md.
"""

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI, embedding_for
from tests.fakes.server import FakeServer, RecordedRequest, ToolCallSpec

__all__ = [
    "FakeAnthropic",
    "FakeOpenAI",
    "FakeServer",
    "RecordedRequest",
    "ToolCallSpec",
    "embedding_for",
]
