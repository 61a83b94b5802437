"""Conversion between zoo models and other ecosystems' checkpoints (`hf`: local Hugging Face directories)."""
