"""Errors a user can act on that are not `ValueError`s, importable without torch.

The CLI turns them into one-line messages; it must be able to name them in a process
that never loads torch (``idard-bench report``). Bad inputs (`images.ImageError`,
`registry.SpecError`) are `ValueError` subclasses and need no entry here.
"""


class LPIPSWeightsUnavailable(RuntimeError):
    """No trunk weights could be found offline and none could be downloaded."""


class LPIPSWeightsInvalid(RuntimeError):
    """A weights source was found but its content is not what it should be."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGTERM, handled as SIGINT's KeyboardInterrupt is: records written
    so far are kept."""


class WorkersLost(RuntimeError):
    """Every worker of a run was lost and none came back in time; records so far are kept."""


class RayUnavailable(RuntimeError):
    """Ray could not be started or reached (an overloaded machine, a wrong --address)."""
