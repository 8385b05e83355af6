"""The LM head's gateware: the int8 GEMV with a running top-k (docs/head.md)."""

from .gemv import HeadGEMV, head_job_layout, head_result_layout

__all__ = ["HeadGEMV", "head_job_layout", "head_result_layout"]
