"""Foundations shared by every layer: errors, events, clocks, configuration and file safety."""

from tomopilot.core.clock import Clock, SimulatedClock, WallClock
from tomopilot.core.config import ConfigModel, load_config, write_resolved_config
from tomopilot.core.errors import ConfigError, TomopilotError
from tomopilot.core.events import Event, EventBus
from tomopilot.core.files import AppendOnlyJournal, atomic_write_bytes, atomic_write_text

__all__ = [
    "AppendOnlyJournal",
    "Clock",
    "ConfigError",
    "ConfigModel",
    "Event",
    "EventBus",
    "SimulatedClock",
    "TomopilotError",
    "WallClock",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_config",
    "write_resolved_config",
]
