"""The local engine: a Pool's worker processes, and the one thread that watches them.

By job:

* ``_engine``: :class:`PoolEngine`, the :class:`~.._contract.Engine` of local workers, and
  its manager thread; it composes the parts below (the data flow is described there);
* ``_workers``: a worker's handle and life cycle (launch, exit causes, what its death
  means for its tasks, start-up deaths);
* ``_dispatch``: which worker gets which batch, and when (prefetch sizing, the queue and
  the lazy sources, stalled workers and taking tasks back);
* ``_reports``: a worker's messages decoded into deliveries (results that do not
  unpickle here);
* ``_deadlines``: ``task_timeout``.
"""

from __future__ import annotations

from ._engine import PoolEngine

__all__ = ["PoolEngine"]
