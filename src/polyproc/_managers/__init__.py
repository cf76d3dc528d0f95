"""Managers (layer 4): a server process holding shared objects, and proxies to them."""
