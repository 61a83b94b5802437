"""Model families, built from the shared block: `build("encoder" | "decoder" | "graph", config)`."""

from zoo.models.config import DecoderConfig, EncoderConfig, TransformerConfig
from zoo.models.decoder import DecodeCache, Decoder, generate
from zoo.models.encoder import Encoder
from zoo.models.graph import GraphConfig, GraphTransformer
from zoo.models.registry import available, build, get, parse_config, register

__all__ = ["DecodeCache", "Decoder", "DecoderConfig", "Encoder", "EncoderConfig", "GraphConfig", "GraphTransformer",
           "TransformerConfig", "available", "build", "generate", "get", "parse_config", "register"]
