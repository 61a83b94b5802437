"""Fused flash-attention kernels in Pallas with structured relative biases and URPE's C applied in-kernel."""

from zoo.attention.pallas.flash import flash_attention

__all__ = ["flash_attention"]
