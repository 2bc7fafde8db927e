"""Import every command family, which fills :data:`~.commands.COMMANDS`."""

from tomopilot.instrument.twin_serialem import (  # noqa: F401
    align_commands,
    camera_commands,
    file_commands,
    focus_commands,
    housekeeping_commands,
    navigator_commands,
    optics_commands,
    realign_commands,
    script_commands,
    stage_commands,
)
