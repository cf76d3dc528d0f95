"""Layer 3: state shared between processes.

Synchronization primitives (on the native futex semaphore of ``_os``), a heap of shared
memory for locks and ctypes values, named shared memory, and queues. Imports layers 0-2
and the leaf modules only.
"""
