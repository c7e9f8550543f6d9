"""molret: text-to-molecule retrieval (ALTEGRAD-2023 challenge reproduction).

The Python API is one object, ``molret.MolRetriever`` (molret.api.retriever), loaded on first use so
that importing a submodule stays light."""

__version__ = "0.1.0"
__all__ = ["MolRetriever", "__version__"]


def __getattr__(name):
    if name == "MolRetriever":
        from molret.api.retriever import MolRetriever
        return MolRetriever
    raise AttributeError(f"module 'molret' has no attribute {name!r}")
