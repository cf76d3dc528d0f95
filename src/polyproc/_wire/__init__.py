"""Layer 1: transport and serialization.

How bytes and objects move between processes: the framed :class:`Connection`, the
picklers (fast by reference, by value as a fallback, and the child-start pickler that
carries descriptors), authentication, listeners, and the wire form of a remote error.
Imports only layer 0 (``polyproc._os``) and the leaf modules.
"""
