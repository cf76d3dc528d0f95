"""Layer 2: processes.

``Process`` and its life cycle, the three start methods (fork, spawn, forkserver) as
launcher objects, the child's bootstrap, and the one :class:`~._state.Runtime` that holds
this interpreter's process-wide state. Imports layers 1 and 0 and the leaf modules only.

How a process starts::

    Process.start()
      └─ launcher(method).launch(process)      _launch.py: fork | spawn | forkserver
           ├─ fork:       os.fork(); the child runs _child.run_child()
           ├─ spawn:      posix_spawn a fresh interpreter running _spawn_main.main(),
           │              which applies the parent's preparation data (sys.path, the main
           │              module as __mp_main__), unpickles the process, then run_child()
           └─ forkserver: ask the fork server (_forkserver.py) to fork a child from its
                          clean, preloaded state; that child unpickles and run_child()
      returns a ChildHandle: pid, sentinel, poll/wait, signals, the child's error report
"""

from . import _launch as _launch  # registers the launchers on the runtime
