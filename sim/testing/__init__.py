"""Test and bench drivers: amaranth.sim and cocotb helpers, the harnesses of single blocks.

Used by ``tests/`` and ``bench/`` only; the product (``sim/backend``, ``host/``) never
imports them.
"""
