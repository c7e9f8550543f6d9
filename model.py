"""The model: encoders, projection heads, the config dataclass and build_model
(re-exported from molret.model / molret.config)."""
from molret.config import ModelConfig  # noqa: F401
from molret.model import GraphEncoder, MolRetModel, TextEncoder, build_model  # noqa: F401
