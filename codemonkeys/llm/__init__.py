"""The model layer: one narrow protocol, SDK-backed providers, and the gateway that keeps the books."""

from .gateway import Gateway
from .scripted import ScriptedModel
from .types import CallTag, ChatRequest, ChatResponse, Message, Model, Usage

__all__ = ["CallTag", "ChatRequest", "ChatResponse", "Gateway", "Message", "Model", "ScriptedModel", "Usage"]
