"""LLM access: one OpenAI-compatible streaming call (client) and the hedging endpoint pool."""

from appliance.llm.client import LLM_ERROR_KINDS, Endpoint, LLMError, probe, stream_chat
from appliance.llm.pool import AllEndpointsFailed, Completion, EndpointHealth, LLMPool

__all__ = [
    "LLM_ERROR_KINDS",
    "AllEndpointsFailed",
    "Completion",
    "Endpoint",
    "EndpointHealth",
    "LLMError",
    "LLMPool",
    "probe",
    "stream_chat",
]
