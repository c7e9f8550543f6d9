"""The model: encoders, projection heads, the config dataclass and build_model
(re-exported from molret.models.encoders / molret.config)."""
from molret.config import ModelConfig  # noqa: F401
from molret.models.encoders import GraphEncoder, MolRetModel, TextEncoder, build_model  # noqa: F401
