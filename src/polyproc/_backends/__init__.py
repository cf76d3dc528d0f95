"""Backends (layer 5): engines that run a Pool's batches somewhere other than local
worker processes. Each registers itself with ``_pool._contract`` on import and imports its
cluster library only when a pool asks for it."""
