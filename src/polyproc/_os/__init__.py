"""Layer 0: operating-system primitives.

Thin, typed wrappers over ``os``, ``select``, ``signal`` and ``socket``: process handles
(pidfd), reaping, waiting on many descriptors, descriptor inheritance, exit-status text.
Nothing here pickles or knows about polyproc objects, and nothing imports a higher layer.
Linux-specific calls live in their own functions so another platform can supply its own.
"""
