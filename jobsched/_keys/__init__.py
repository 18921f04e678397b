"""Journal keys: a stable name for a job, derived from what it computes.

Owns key derivation (``derive``), the byte format of keys (``frames``), the encoding of functions
(``functions``) and of values (``values``), and the cache of function encodings (``cache``).

May import: ``errors`` and ``remote_call`` only. ``_core`` uses it to key jobs as they enter.
"""
