"""Networks: the mel diffusion transformer (and, later, the tag classifier)."""

from dittomusic.models.transformer import MelDiT, ModelConfig

__all__ = ["MelDiT", "ModelConfig"]
