"""Shared layers: the Transformer block, its attention (with KV cache), MLP and norms."""

from zoo.nn.attention import AttentionConfig, LayerCache, SelfAttention, compatible
from zoo.nn.context import CallContext
from zoo.nn.embed import TokenEmbedding
from zoo.nn.block import NORM_POSITIONS, Block, NormConfig
from zoo.nn.mlp import ACTIVATIONS, Mlp, MlpConfig
from zoo.nn.norms import NORMS, make_norm

__all__ = ["ACTIVATIONS", "AttentionConfig", "Block", "CallContext", "LayerCache", "Mlp", "MlpConfig", "NORMS",
           "NORM_POSITIONS", "NormConfig", "SelfAttention", "TokenEmbedding", "compatible", "make_norm"]
