"""The seed tour: the examples of the multiprocessing introduction polyproc grew from.

Each module is a complete program written against ``import polyproc as
multiprocessing``; ``polyproc demo`` runs each one as its own process (so spawn can
re-import it as ``__mp_main__``) under every start method.
"""

# (module, title) in the order of the original article.
EXAMPLES = [
    ("pool_map", "Pool(5).map(f, [1, 2, 3]) squares in worker processes"),
    ("process_info", "A Process runs a function in a child; os.getppid/getpid show who is who"),
    ("threads_vs_processes", "Threads share one list; each process gets its own copy"),
    ("queue_hello", "Processes hand results back through a Queue"),
    ("lock_prints", "A Lock keeps the prints of ten processes whole"),
    ("value_array", "A Value and an Array in shared memory, changed by a child"),
    ("manager_dict_list", "A Manager's dict and list, changed by a child, seen by the parent"),
    ("pool_apply_async", "apply_async results, collected with get(timeout=10)"),
    ("pool_survives_a_crash", "Beyond the article: a worker killed mid-task, the pool goes on"),
    ("pool_progress", "Beyond the article: a progress bar, and what each worker did"),
]
