"""PyTorch modules for CPU inference on rowquant tables: drop-in replacements for
``nn.Embedding`` and ``nn.EmbeddingBag`` that keep the table at one byte per value.

``forward`` takes the same arguments as torch's modules and runs rowquant's kernels directly on
the tensors' memory (no copies), returning float32 tensors. Unlike torch's quantized
``embedding_bag_byte`` ops, ``mode="mean"`` works. The modules are for inference: they have no
gradients (the table is a pair of buffers, not a parameter), and run on CPU tensors only.

Examples
--------
>>> import torch
>>> from rowquant.torch import QuantizedEmbeddingBag
>>> float_bag = torch.nn.EmbeddingBag(1000, 64, mode="mean")
>>> bag = QuantizedEmbeddingBag.from_float(float_bag)
>>> bag
QuantizedEmbeddingBag(1000, 64, mode='mean')
>>> ids, offsets = torch.tensor([3, 1, 4, 1, 5]), torch.tensor([0, 2])
>>> pooled = bag(ids, offsets)
>>> pooled.shape, pooled.dtype
(torch.Size([2, 64]), torch.float32)
>>> error = (pooled - float_bag(ids, offsets)).abs().max()   # at most half a step per value
>>> bool(error <= bag.scales.max() / 2)
True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .table import QuantizedEmbedding as _Table

__all__ = ["QuantizedEmbedding", "QuantizedEmbeddingBag"]


def _ids(tensor, name: str) -> np.ndarray:
    if not isinstance(tensor, torch.Tensor):
        return np.asarray(tensor)
    if tensor.device.type != "cpu":
        raise ValueError(f"{name} is on {tensor.device}; rowquant's modules run on the CPU")
    return tensor.detach().numpy()


class _TableModule(nn.Module):
    """The codes and scales as buffers (so state_dict, save and load work), and the rowquant
    table over their memory, rebuilt only when the buffers change."""

    codes: torch.Tensor
    scales: torch.Tensor

    def __init__(self, table: _Table):
        super().__init__()
        if not isinstance(table, _Table):
            raise TypeError(
                f"table must be a rowquant.QuantizedEmbedding, got {type(table).__name__}"
            )
        self.register_buffer("codes", torch.from_numpy(np.array(table.codes, order="C")))
        self.register_buffer("scales", torch.from_numpy(np.array(table.scales)))
        self._cached = None
        self._cached_key = None

    @property
    def num_embeddings(self) -> int:
        return self.codes.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.codes.shape[1]

    @property
    def table(self) -> _Table:
        """The rowquant table over this module's buffers (no copy)."""
        key = (self.codes.data_ptr(), self.scales.data_ptr(), self.codes.shape, self.scales.dtype)
        if self._cached is None or key != self._cached_key:
            if self.codes.device.type != "cpu" or self.scales.device.type != "cpu":
                raise ValueError("rowquant's modules run on the CPU; move the module back")
            self._cached = _Table(self.codes.numpy(), self.scales.numpy())  # checks the scales
            self._cached_key = key
        return self._cached

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._cached = None  # loaded in place: check the new scales on the next call

    @staticmethod
    def _float_weight(module, kind):
        if not isinstance(module, kind):
            raise TypeError(f"expected a torch.nn.{kind.__name__}, got {type(module).__name__}")
        if module.max_norm is not None:
            raise ValueError(
                "max_norm renormalizes rows as they are looked up, which a quantized table "
                "cannot do; build the module from one without max_norm"
            )
        return module.weight.detach().cpu().float().numpy()


class QuantizedEmbedding(_TableModule):
    """``nn.Embedding`` for inference on a rowquant table: ``forward(input)`` returns the
    dequantized rows, shape ``input.shape + (embedding_dim,)``.

    Parameters
    ----------
    table : rowquant.QuantizedEmbedding
    padding_idx : int, optional
        Kept for parity with ``nn.Embedding`` (whose padding row is zero, and stays zero when
        quantized); it does not change lookups.

    Examples
    --------
    >>> import numpy as np, torch, rowquant as rq
    >>> from rowquant.torch import QuantizedEmbedding
    >>> qe = rq.quantize(np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32))
    >>> module = QuantizedEmbedding(qe)
    >>> module(torch.tensor([[1, 2], [3, 4]])).shape
    torch.Size([2, 2, 8])
    """

    def __init__(self, table: _Table, padding_idx: int | None = None):
        super().__init__(table)
        self.padding_idx = padding_idx

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> QuantizedEmbedding:
        """Quantize an ``nn.Embedding``'s weights (rowquant's exact per-row scheme)."""
        from . import quantize

        weight = cls._float_weight(embedding, nn.Embedding)
        return cls(quantize(weight), padding_idx=embedding.padding_idx)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        ids = _ids(input, "input")
        out = torch.empty(tuple(ids.shape) + (self.embedding_dim,), dtype=torch.float32)
        self.table.take(ids, out=out.numpy())
        return out

    def extra_repr(self) -> str:
        padding = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{padding}"


class QuantizedEmbeddingBag(_TableModule):
    """``nn.EmbeddingBag`` for inference on a rowquant table.

    ``forward(input, offsets=None, per_sample_weights=None)`` as in torch: 1-D ``input`` with
    ``offsets`` (bag starts; with ``include_last_offset`` the last one equals ``len(input)``),
    or 2-D ``input`` of fixed-size bags; ``per_sample_weights`` with ``mode="sum"``.
    ``mode="mean"`` divides by the number of ids that are not ``padding_idx``; empty bags give
    zeros. One difference: with ``include_last_offset=True`` the last offset must equal
    ``len(input)`` (torch silently drops the ids after it).

    Parameters
    ----------
    table : rowquant.QuantizedEmbedding
    mode : {"mean", "sum"}, default "mean" (as ``nn.EmbeddingBag``)
    padding_idx : int, optional
        Ids equal to it are left out of the sums and the counts.
    include_last_offset : bool, default False

    Examples
    --------
    >>> import numpy as np, torch, rowquant as rq
    >>> from rowquant.torch import QuantizedEmbeddingBag
    >>> qe = rq.quantize(np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32))
    >>> bag = QuantizedEmbeddingBag(qe, mode="sum")
    >>> bag(torch.tensor([[1, 2, 3], [4, 5, 6]])).shape       # two bags of three
    torch.Size([2, 8])
    >>> weights = torch.tensor([0.5, 2.0, 1.0])
    >>> bag(torch.tensor([7, 8, 9]), torch.tensor([0, 1]), per_sample_weights=weights).shape
    torch.Size([2, 8])
    """

    def __init__(
        self,
        table: _Table,
        mode: str = "mean",
        padding_idx: int | None = None,
        include_last_offset: bool = False,
    ):
        super().__init__(table)
        if mode not in ("sum", "mean"):
            raise ValueError(f"mode must be 'sum' or 'mean', got {mode!r}")
        self.mode = mode
        self.padding_idx = padding_idx
        self.include_last_offset = bool(include_last_offset)

    @classmethod
    def from_float(cls, bag: nn.EmbeddingBag) -> QuantizedEmbeddingBag:
        """Quantize an ``nn.EmbeddingBag``'s weights, keeping its mode, padding_idx and
        include_last_offset. ``mode="max"`` is not supported."""
        from . import quantize

        weight = cls._float_weight(bag, nn.EmbeddingBag)
        if bag.mode not in ("sum", "mean"):
            raise ValueError(f"mode {bag.mode!r} is not supported (sum and mean are)")
        return cls(
            quantize(weight),
            mode=bag.mode,
            padding_idx=bag.padding_idx,
            include_last_offset=bag.include_last_offset,
        )

    def forward(
        self,
        input: torch.Tensor,  # noqa: A002 (torch's name)
        offsets: torch.Tensor | None = None,
        per_sample_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ids = _ids(input, "input")
        offsets_array = None if offsets is None else _ids(offsets, "offsets")
        if ids.ndim == 2 and offsets is not None:
            raise ValueError("offsets must be None when input is 2-D (fixed-size bags)")
        if ids.ndim == 1 and offsets is None:
            raise ValueError("1-D input needs offsets (or give 2-D input of fixed-size bags)")
        weights = None
        if per_sample_weights is not None:
            weights = _ids(per_sample_weights, "per_sample_weights")
            if weights.shape != ids.shape:
                raise ValueError(
                    f"per_sample_weights has shape {weights.shape}, input has {ids.shape}"
                )
            weights = weights.reshape(-1)
        if ids.ndim == 2:
            bags = ids.shape[0]
        else:
            bags = len(offsets_array) - (1 if self.include_last_offset else 0)
        out = torch.empty((max(bags, 0), self.embedding_dim), dtype=torch.float32)
        self.table.bag(
            ids,
            offsets_array,
            weights=weights,
            mode=self.mode,
            include_last_offset=self.include_last_offset if ids.ndim == 1 else False,
            padding_idx=self.padding_idx,
            out=out.numpy(),
        )
        return out

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.include_last_offset:
            text += ", include_last_offset=True"
        return text
