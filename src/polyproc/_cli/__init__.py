"""The ``polyproc`` command: the seed tour (``demo``) and facts about this machine (``info``).

The top layer: it uses only polyproc's public API, like any user program.
"""

from ._main import main

__all__ = ["main"]
