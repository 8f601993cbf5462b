"""The one agent loop and what every trajectory kind shares (state, store, sandbox seams)."""

from .loop import Agent, Configuration, Finished, LoopDeps, Observation
from .seams import ScriptRunner, SourceFiles, TestRunnerLike, execution_view
from .state import AgentState, ChatTurn, Status, TrajectoryStore, save

__all__ = [
    "Agent",
    "AgentState",
    "ChatTurn",
    "Configuration",
    "Finished",
    "LoopDeps",
    "Observation",
    "ScriptRunner",
    "SourceFiles",
    "Status",
    "TestRunnerLike",
    "TrajectoryStore",
    "execution_view",
    "save",
]
