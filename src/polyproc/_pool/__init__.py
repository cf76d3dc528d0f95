"""Layer 4: the process pool.

``_results`` holds the result objects callers wait on (every wait takes a timeout);
``_worker`` is the loop a worker process runs; ``_engine`` owns the workers and the one
manager thread that dispatches tasks, collects results and notices dead or stuck workers;
``_pool`` is the multiprocessing-shaped ``Pool`` over it. Imports layers 0-3 only.
"""
