"""Attention: the core, the KV cache and the block that joins them."""
