"""Shared layers: the Transformer block, its attention (with KV cache), MLP and norms."""

from zoo.nn.attention import AttentionOptions, LayerCache, SelfAttention, compatible
from zoo.nn.context import CallContext
from zoo.nn.embed import TokenEmbedding
from zoo.nn.block import NORM_POSITIONS, Block
from zoo.nn.mlp import ACTIVATIONS, Mlp
from zoo.nn.norms import NORMS, make_norm

__all__ = ["ACTIVATIONS", "AttentionOptions", "Block", "CallContext", "LayerCache", "Mlp", "NORMS", "NORM_POSITIONS", "SelfAttention",
           "TokenEmbedding", "compatible", "make_norm"]
