"""Layer 4: the process pool.

``_results`` holds the result objects callers wait on (every wait takes a timeout);
``_contract`` is what ``Pool`` and its engines agree on (the ``Engine`` protocol, batches,
run states, the retry rule, the registry of cluster engines); ``_worker`` is the loop a
worker process runs; ``_local`` is the engine of local worker processes (the workers and
the one manager thread that dispatches tasks, collects results and notices dead or stuck
workers); ``_threads`` is the engine of ``ThreadPool``; ``_pool`` is the
multiprocessing-shaped ``Pool`` over an engine.
Imports layers 0-3 only.
"""
