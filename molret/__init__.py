"""molret: text-to-molecule retrieval (ALTEGRAD-2023 challenge reproduction)."""

__version__ = "0.1.0"
