"""PULSE's stopping rule, a parameter of the plug-in (`model`) that the optimiser
(`optimize`) obeys: apart from both, so that neither imports the other for it."""

from typing import Literal

#: ``reference``: all steps, the last step's image (the reference's rule); ``first-hit``: the earlier rule.
StopRule = Literal["reference", "first-hit"]
