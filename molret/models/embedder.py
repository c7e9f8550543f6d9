"""What every search and prediction embeds with: one checkpoint, or an ensemble of checkpoints in one model file.

An ensemble embeds a text or a molecule as the concatenation of its members' L2-normalised embeddings, member
i's scaled by sqrt(w_i) with the weights summing to 1. The cosine (dot product) of two such vectors is then
the weighted mean of the members' cosines, exactly the ensemble's score, so that every index kind, shard
folder, library cache and ``MolRetriever`` method works on it unchanged. A plain checkpoint is the one-member
case and keeps its embeddings bit for bit.

The model file (``save_ensemble``) holds the members' checkpoints (weights, config, vocabulary, tokenizer) with
every tensor that members share (the frozen text encoder, a vocabulary) stored once, their weights, and what
the submission fused and re-ranked with: the name-fusion weights and the re-ranking method and temperature;
optionally the claims scorer (its ranker, weight, scale and top-k), the training texts' embeddings (library
search's hubness bank) and a PCA projection (an opt-in, measured reduction of the joined width). It is read like a checkpoint, with the safe loader (tensors and
plain data only).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from molret.models.checkpoint import FORMAT as CHECKPOINT_FORMAT
from molret.models.checkpoint import model_from_checkpoint, read_checkpoint, to_plain
from molret.utils.errors import MolretError
from molret.utils.files import atomic_torch_save

ENSEMBLE_FORMAT = "molret-ensemble"
ENSEMBLE_VERSION = 1
# what an ensemble's member keeps of its checkpoint (no optimiser or training state)
MEMBER_KEYS = ("config", "model_state", "vocab_ids", "text_model_config", "tokenizer_files")


@dataclass
class MemberModel:
    """One loaded checkpoint of an ``Embedder``, with its ensemble weight."""
    model: object
    cfg: object                 # RunConfig
    vocab: object
    tokenizer: object
    weight: float = 1.0
    name: str = ""
    text_key: str = ""          # members with one key share their frozen text encoder's output


@dataclass
class Fusion:
    """What a model file's submission fused with the learned scores and how it re-ranked them."""
    names_weights: dict | None = None    # molret.ranking.name_fusion weights; None: no name fusion
    rerank: str = "none"
    rerank_temperature: float = 0.05
    metrics: dict = field(default_factory=dict)   # the pool report the weights were fitted on (shown, not used)
    # library search's hubness correction (molret.search.engine.LibrarySearch.enable_hubness): the bank's
    # embeddings (the training texts, as this model embeds them) and its temperature; None: off
    hubness_bank: np.ndarray | None = None
    hubness_temperature: float = 0.0
    # the claims scorer fused before the names (molret.ranking.claims.fusion.ClaimsScorer.state: plain data,
    # read back by ClaimsScorer.from_state where it is used); None: none
    claims: dict | None = None


class Embedder:
    """One checkpoint or an ensemble of them: text and molecule embeddings through one interface."""

    def __init__(self, members: Sequence[MemberModel], device, path=None, fusion: Fusion | None = None,
                 ensemble: bool | None = None, projection: np.ndarray | None = None):
        if not members:
            raise MolretError("a model needs at least one member")
        total = sum(m.weight for m in members)
        if any(m.weight < 0 for m in members) or not total > 0:
            raise MolretError("ensemble weights must be >= 0 with a positive sum")
        self.members = list(members)
        for m in self.members:
            m.weight = m.weight / total
        self.device, self.path = device, (str(path) if path is not None else None)
        self.fusion = fusion or Fusion()
        self.ensemble = len(self.members) > 1 if ensemble is None else ensemble
        # an opt-in reduction (fit_projection): the joined embedding times this [full dim, dim] matrix,
        # renormalised; cosines then approximate the ensemble's (measured, never implied)
        self.projection = None if projection is None else np.ascontiguousarray(projection, dtype=np.float32)

    @classmethod
    def single(cls, model, cfg, vocab, tokenizer=None, device=None, path=None) -> "Embedder":
        """The embedder of one loaded model (``molret.models.checkpoint.load_model``'s four values)."""
        import torch
        return cls([MemberModel(model, cfg, vocab, tokenizer, 1.0, str(path or ""))],
                   device if device is not None else torch.device("cpu"), path, ensemble=False)

    # ------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        return self.full_dim if self.projection is None else int(self.projection.shape[1])

    @property
    def full_dim(self) -> int:
        """The width of the members' embeddings joined (before a projection)."""
        return sum(int(m.cfg.model.embed_dim) for m in self.members)

    @property
    def data_dir(self) -> str:
        """The data folder the (first) member trained on (its train.tsv: the names' pairs dictionary)."""
        return self.members[0].cfg.train.data_dir

    @property
    def eval_batch_size(self) -> int:
        return int(self.members[0].cfg.train.eval_batch_size)

    def describe(self) -> str:
        """One line: the text model and graph encoders, the width."""
        from collections import Counter
        text = sorted({Path(str(m.cfg.model.text_model)).name if Path(str(m.cfg.model.text_model)).exists()
                       else str(m.cfg.model.text_model) for m in self.members})
        convs = Counter(m.cfg.model.conv for m in self.members)
        graph = ", ".join(f"{n} x {c}" if n > 1 else c for c, n in convs.items())
        what = f"ensemble of {len(self.members)} ({graph})" if self.ensemble else graph
        reduced = f" (reduced from {self.full_dim})" if self.projection is not None else ""
        return f"{' + '.join(text)} + {what}, {self.dim}-d{reduced}"

    def join(self, parts: list) -> np.ndarray:
        """The members' embeddings (one array each, same rows) as the model's: a checkpoint's unchanged, an
        ensemble's concatenated, member i's times sqrt(w_i)."""
        if not self.ensemble:
            return parts[0]
        joined = np.ascontiguousarray(np.concatenate(
            [p * np.float32(math.sqrt(m.weight)) for p, m in zip(parts, self.members)], axis=1), dtype=np.float32)
        if self.projection is None:
            return joined
        reduced = joined @ self.projection
        return reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)

    # ------------------------------------------------------------ embedding
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64, amp: str = "none",
                     progress: bool = False) -> np.ndarray:
        """Embeddings of ``texts`` (one row each): each member's, joined. Members with one frozen text encoder
        (same weights, pooling and tokenizer) run it once."""
        from molret.data.challenge import TextFeatures, tokenize
        from molret.models.encoding import embed_texts, run_text_encoder
        from molret.models.text_bow import attach
        texts = list(texts)
        tokens_of, features_of, parts = {}, {}, []
        for m in self.members:
            tok_key = (m.text_key or id(m), int(m.cfg.model.max_length))
            if tok_key not in tokens_of:
                tokens_of[tok_key] = tokenize(texts, m.tokenizer, m.cfg.model.max_length)
            tokens = tokens_of[tok_key]
            if self.ensemble and m.text_key:   # one text encoder (weights, pooling, tokenizer): one output
                if tok_key not in features_of:
                    features_of[tok_key] = TextFeatures(run_text_encoder(m.model, tokens, self.device, batch_size,
                                                                         progress=False))
                data = features_of[tok_key]
            else:
                data = tokens
            parts.append(embed_texts(m.model, attach(data, texts, m.model), self.device, batch_size, amp, progress))
        return self.join(parts)

    def encode_store(self, store, batch_size: int | None = None, amp: str = "none", smiles=None, cache_dir=None,
                     progress: bool = False) -> np.ndarray:
        """Embeddings of every molecule of a GraphStore: each member's (its vocabulary attached, its molecule
        features computed once per feature family: from ``smiles`` when given, else the decoded graphs,
        cached in ``cache_dir``), joined."""
        from molret.chem.mol_features import ensure_model_features, model_families
        from molret.models.encoding import embed_graphs
        parts: list = [None] * len(self.members)
        # members grouped by feature family, so that each family's features are attached once
        order = sorted(range(len(self.members)), key=lambda i: model_families(self.members[i].cfg.model))
        for i in order:
            m = self.members[i]
            store.attach_vocab(m.vocab)
            ensure_model_features(m.cfg.model, store, smiles=smiles, cache_dir=cache_dir, progress=progress)
            parts[i] = embed_graphs(m.model, store, self.device, batch_size or m.cfg.train.eval_batch_size, amp,
                                    progress)
        return self.join(parts)


# ---------------------------------------------------------------- the file

def _tensor_key(t) -> str:
    t = t.detach().to("cpu").contiguous()
    h = hashlib.sha1(f"{t.dtype}:{tuple(t.shape)};".encode())
    if t.numel():
        import torch
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def text_encoder_key(ckpt: dict) -> str:
    """sha1 of what a member's frozen text-encoder output depends on: its weights, pooling, length and tokenizer."""
    cfg = ckpt["config"]["model"]
    h = hashlib.sha1(f"{cfg.get('text_pooling')}:{cfg.get('max_length')}".encode())
    for name in sorted(k for k in ckpt["model_state"] if k.startswith("text_encoder.")):
        h.update(name.encode() + _tensor_key(ckpt["model_state"][name]).encode())
    for name, data in sorted(ckpt.get("tokenizer_files", {}).items()):
        h.update(name.encode() + hashlib.sha1(data).hexdigest().encode())
    return h.hexdigest()


def fit_projection(rows: np.ndarray, dim: int) -> np.ndarray:
    """The [D, dim] matrix of the top ``dim`` principal directions of ``rows`` (uncentred: what keeps their
    inner products best), for ``Embedder.projection``."""
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2 or not 1 <= dim < x.shape[1]:
        raise MolretError(f"a reduction to {dim} dimensions needs rows wider than that (got shape {x.shape})")
    values, vectors = np.linalg.eigh(x.T @ x)
    return np.ascontiguousarray(vectors[:, np.argsort(values)[::-1][:dim]], dtype=np.float32)


def save_ensemble(path, checkpoints: Sequence, weights: Sequence[float], fusion: Fusion | None = None,
                  names: Sequence[str] | None = None, projection: np.ndarray | None = None) -> dict:
    """Write the model file of an ensemble of ``checkpoints`` (best.pt files) with their ``weights`` (rescaled
    to sum to 1; members of weight 0 are left out) and ``fusion``, atomically. A tensor that several members
    hold (the frozen text encoder, the vocabulary) is stored once. Returns {members, bytes}."""
    if len(checkpoints) != len(weights):
        raise MolretError(f"{len(weights)} weights for {len(checkpoints)} checkpoints")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or not w.sum() > 0:
        raise MolretError("ensemble weights must be >= 0 with a positive sum")
    names = list(names) if names is not None else [str(p) for p in checkpoints]
    fusion = fusion or Fusion()
    shared: dict = {}      # content key -> the one tensor object stored (torch.save writes a storage once)

    def once(t):
        return shared.setdefault(_tensor_key(t), t)

    members = []
    for ckpt_path, weight, name in zip(checkpoints, w / w.sum(), names):
        if weight == 0:
            continue
        ckpt = read_checkpoint(ckpt_path)
        member = {k: ckpt[k] for k in MEMBER_KEYS if k in ckpt}
        member["model_state"] = {k: once(v) for k, v in ckpt["model_state"].items()}
        member["vocab_ids"] = once(ckpt["vocab_ids"])
        member.update(weight=float(weight), name=str(name), text_key=text_encoder_key(ckpt),
                      metrics={k: float(v) for k, v in (ckpt.get("metrics") or {}).items()
                               if isinstance(v, (int, float))})
        members.append(member)
    content = {"format": ENSEMBLE_FORMAT, "version": ENSEMBLE_VERSION, "members": members,
               "names_weights": dict(fusion.names_weights) if fusion.names_weights else None,
               "rerank": fusion.rerank, "rerank_temperature": float(fusion.rerank_temperature),
               "metrics": {k: float(v) for k, v in fusion.metrics.items() if isinstance(v, (int, float))},
               "projection": None if projection is None else np.asarray(projection, dtype=np.float32),
               "hubness": None if fusion.hubness_bank is None else {
                   "bank": np.asarray(fusion.hubness_bank, dtype=np.float32),
                   "temperature": float(fusion.hubness_temperature)},
               "claims": fusion.claims}
    atomic_torch_save(to_plain(content), path)
    return {"members": len(members), "bytes": Path(path).stat().st_size}


def is_ensemble_file(content: dict) -> bool:
    return isinstance(content, dict) and content.get("format") == ENSEMBLE_FORMAT


def load_embedder(path, device="cpu") -> Embedder:
    """The ``Embedder`` of a checkpoint (best.pt of main.py) or of an ensemble's model file, on ``device``."""
    content = read_checkpoint(path, formats=(CHECKPOINT_FORMAT, ENSEMBLE_FORMAT))
    if content["format"] == CHECKPOINT_FORMAT:
        model, cfg, vocab, tokenizer = model_from_checkpoint(content, path, device)
        return Embedder([MemberModel(model, cfg, vocab, tokenizer, 1.0, str(path))], device, path,
                        Fusion(metrics=_numbers(content.get("metrics"))), ensemble=False)
    version = content.get("version")
    if not isinstance(version, int) or version > ENSEMBLE_VERSION:
        raise MolretError(f"{path} was written by a newer molret (ensemble format {version})")
    entries = content.get("members")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise MolretError(f"{path}: an ensemble model file without members")
    members, text_models = [], {}
    for i, entry in enumerate(entries):
        where = f"{path} (member {i + 1})"
        weight = entry.get("weight")
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise MolretError(f"{where}: a weight must be a number >= 0, got {weight!r}")
        key = entry.get("text_key") if isinstance(entry.get("text_key"), str) else ""
        shared = text_models.get(key) if key else None
        model, cfg, vocab, tokenizer = model_from_checkpoint(entry, where, device, hf_model=shared)
        if key and shared is None:
            text_models[key] = model.text_encoder.hf_model
        members.append(MemberModel(model, cfg, vocab, tokenizer, float(weight), str(entry.get("name", i)), key))
    names = content.get("names_weights")
    if names is not None and (not isinstance(names, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
            for k, v in names.items())):
        raise MolretError(f"{path}: name-fusion weights must map feature names to numbers >= 0")
    temperature = content.get("rerank_temperature", 0.05)
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise MolretError(f"{path}: the re-ranking temperature must be a number > 0, got {temperature!r}")
    fusion = Fusion(dict(names) if names else None, str(content.get("rerank", "none")), float(temperature),
                    _numbers(content.get("metrics")))
    embedder = Embedder(members, device, path, fusion, ensemble=True)
    projection = content.get("projection")
    if projection is not None:
        import torch
        if not isinstance(projection, torch.Tensor) or projection.ndim != 2 or \
                projection.shape[0] != embedder.full_dim or not torch.isfinite(projection).all():
            raise MolretError(f"{path}: its projection is not a finite [{embedder.full_dim}, d] matrix")
        embedder.projection = projection.float().numpy()
    hubness = content.get("hubness")
    if hubness is not None:
        import torch
        bank, t = (hubness.get("bank"), hubness.get("temperature")) if isinstance(hubness, dict) else (None, None)
        if not isinstance(bank, torch.Tensor) or bank.ndim != 2 or bank.shape[1] != embedder.dim or \
                not isinstance(t, (int, float)) or not t > 0:
            raise MolretError(f"{path}: its hubness bank is not a [texts, {embedder.dim}] matrix with a temperature > 0")
        fusion.hubness_bank, fusion.hubness_temperature = bank.float().numpy(), float(t)
    fusion.claims = check_claims_entry(content.get("claims"), path)
    return embedder


def check_claims_entry(claims, path):
    """A model file's claims entry (None: none), checked for its shape; its ranker is read (and checked against
    the rules of this molret) where it is used (molret.ranking.claims.fusion.ClaimsScorer.from_state)."""
    if claims is None:
        return None
    ok = isinstance(claims, dict) and isinstance(claims.get("ranker"), dict)
    if ok:
        weight, scale, top_k = claims.get("weight"), claims.get("scale"), claims.get("top_k")
        ok = isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0 and \
            isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0 and \
            isinstance(top_k, int) and top_k >= 1 and isinstance(claims["ranker"].get("model"), (str, dict))
    if not ok:
        raise MolretError(f"{path}: its claims scorer is not a ranker with a weight >= 0, a scale > 0 and a top-k "
                          f">= 1: write the file again (ensemble_method.py --claims --save-model)")
    return claims


def _numbers(d) -> dict:
    return {str(k): float(v) for k, v in (d or {}).items() if isinstance(v, (int, float))} if isinstance(d, dict) \
        else {}
