"""PyTorch modules for CPU inference on rowquant tables: drop-in replacements for
``nn.Embedding`` and ``nn.EmbeddingBag`` that keep the table at one byte per value, and
:class:`QuantizedLogits`, the tied output layer (``hidden @ E.T``) scored on the same table.

``forward`` takes the same arguments as torch's modules and calls rowquant's kernels, registered
as the PyTorch operators ``torch.ops.rowquant.take``, ``torch.ops.rowquant.embedding_bag`` and
``torch.ops.rowquant.scores``, on the tensors' memory (no copies). Because forward is one
operator call, ``torch.jit.trace``, ``torch.jit.script``, ``torch.compile(fullgraph=True)`` and
``torch.export.export`` record the operator, and ``torch.onnx.export`` writes the graph
:func:`rowquant.to_onnx` writes (``dynamo=True``, torch's default, needs
``custom_translation_table=onnx_translation_table()``).
A scripted or exported model needs ``import rowquant.torch`` wherever it is loaded. Under
``torch.jit`` (trace, script) an error of rowquant's (say, an id out of range) reaches the
caller as the TorchScript interpreter's RuntimeError, with rowquant's message in it.

Unlike torch's quantized ``embedding_bag_byte`` ops, ``mode="mean"`` and ``mode="max"`` work. The
modules are for inference: they have no gradients (the table is a pair of buffers, not a
parameter), run on CPU tensors only, and have no ``max_norm`` (renormalizing rows as they are
looked up would change the table). They answer in float32, or in the dtype the module was cast
to (``.half()``, ``.to(torch.bfloat16)``, ...) or built from, while the table stays as it is.

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

from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from . import _checks, _similarity, _torch_ops, _torch_onnx
from ._torch_onnx import onnx_translation_table
from .table import QuantizedEmbedding as _Table

__all__ = ["QuantizedEmbedding", "QuantizedEmbeddingBag", "QuantizedLogits",
           "onnx_translation_table"]

_torch_onnx.register_symbolics()

_MODES = ("sum", "mean", "max")


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"output_dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


class _TableModule(nn.Module):
    """The codes and scales as buffers (so that state_dict, save and load work), and the dtype
    forward answers in."""

    codes: torch.Tensor
    scales: torch.Tensor
    padding_idx: Optional[int]
    __jit_unused_properties__ = ["table"]

    def __init__(
        self, table: _Table, padding_idx: Optional[int], output_dtype: torch.dtype
    ) -> None:
        super().__init__()
        if not isinstance(table, _Table):
            raise TypeError(
                f"table must be a rowquant.QuantizedEmbedding, got {type(table).__name__}"
            )
        if table.scheme.kind != "symmetric":
            raise NotImplementedError(
                f"the torch modules serve 8-bit tables only, not this {table.scheme.name} table; "
                "torch.ops.quantized.embedding_bag_4bit_rowwise_offsets (or _2bit_) reads "
                "rq.to_fbgemm(table)"
            )
        self.register_buffer("codes", torch.from_numpy(np.array(table.codes, order="C")))
        # float32 scales: a table's 16-bit ones are widened once, exactly
        self.register_buffer("scales", torch.from_numpy(np.array(table.scale_values())))
        self.padding_idx = _checks.padding_row(padding_idx, len(table))
        self.output_dtype = _float_dtype(output_dtype)

    @property
    def num_embeddings(self) -> int:
        """Rows of the table, as ``nn.Embedding.num_embeddings``."""
        return self.codes.shape[0]

    @property
    def embedding_dim(self) -> int:
        """Width of each row, as ``nn.Embedding.embedding_dim``."""
        return self.codes.shape[1]

    @property
    def table(self) -> _Table:
        """The rowquant table over this module's buffers (no copy; the scales checked)."""
        return _torch_ops.checked_table(self.codes, self.scales)

    def _apply(self, fn, recurse=True):
        """Casts (``.half()``, ``.to(torch.float64)``, ...) change the dtype forward answers in,
        not the table: the float32 scales and uint8 codes are what the kernels read, exactly.
        Moves between devices apply to the buffers as usual."""
        codes, scales = self.codes, self.scales
        super()._apply(fn, recurse)
        if self.codes.dtype != torch.uint8:  # .type(...) casts every tensor
            self.codes = codes.to(self.codes.device)
        if self.scales.dtype != torch.float32:
            self.output_dtype = self.scales.dtype
            self.scales = scales.to(self.scales.device)
        else:
            # .float() leaves float32 scales as they are: ask fn what it does to another
            # dtype (float16: every device has it)
            asked = fn(torch.empty(0, dtype=torch.float16, device=self.scales.device)).dtype
            if asked != torch.float16 and asked.is_floating_point:
                self.output_dtype = asked
        return self

    @staticmethod
    def _float_weight(module: nn.Module, kind: type) -> np.ndarray:
        if not isinstance(module, kind):
            raise TypeError(f"expected a torch.nn.{kind.__name__}, got {type(module).__name__}")
        if module.max_norm is not None:
            raise ValueError(
                "max_norm renormalizes rows as they are looked up, which a quantized table "
                "cannot do; build the module from one without max_norm"
            )
        # float16, bfloat16 and float64 weights: widened exactly, or rounded once as quantize
        # would round them
        return module.weight.detach().cpu().float().numpy()


class QuantizedEmbedding(_TableModule):
    """``nn.Embedding`` for inference on a rowquant table: ``forward(input)`` returns the
    dequantized rows, shape ``input.shape + (embedding_dim,)``, for integer ids of any shape
    (a 0-d id gives one row).

    Parameters
    ----------
    table : rowquant.QuantizedEmbedding
    padding_idx : int, optional
        Kept for parity with ``nn.Embedding`` (whose padding row is zero, and stays zero when
        quantized); it does not change lookups. As there, it must lie in
        ``[-num_embeddings, num_embeddings)`` and a negative one counts from the end.
    output_dtype : torch.dtype, default torch.float32
        The floating dtype of the rows forward returns (the table stays uint8 codes and float32
        scales). Casting the module (``.half()``, ``.to(torch.bfloat16)``) sets it too.

    Raises
    ------
    TypeError
        ``table`` is not a :class:`rowquant.QuantizedEmbedding`, ``output_dtype`` not a
        floating dtype.
    ValueError
        ``padding_idx`` is outside the table.

    Notes
    -----
    ``forward`` raises IndexError for ids outside ``[0, num_embeddings)`` (negative ones
    included, as ``nn.Embedding`` does) and ValueError for tensors that are not on the CPU or a
    table whose scales are not finite and non-negative.

    Examples
    --------
    >>> import numpy as np, torch, rowquant as rq
    >>> from rowquant.torch import QuantizedEmbedding
    >>> qe = rq.quantize(np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32))
    >>> module = QuantizedEmbedding(qe)
    >>> module(torch.tensor([[1, 2], [3, 4]])).shape
    torch.Size([2, 2, 8])
    >>> module.half()(torch.tensor(7)).dtype      # the table is unchanged, the answer float16
    torch.float16
    """

    def __init__(
        self,
        table: _Table,
        padding_idx: Optional[int] = None,
        output_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(table, padding_idx, output_dtype)

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> "QuantizedEmbedding":
        """Quantize an ``nn.Embedding``'s weights (rowquant's exact per-row scheme), keeping its
        padding_idx and answering in its weights' dtype.

        Parameters
        ----------
        embedding : torch.nn.Embedding
            Without ``max_norm``; its weights may be float16, bfloat16, float32 or float64.

        Returns
        -------
        QuantizedEmbedding

        Raises
        ------
        TypeError
            ``embedding`` is not an ``nn.Embedding``.
        ValueError
            It has ``max_norm``, or weights with NaN or inf.

        Examples
        --------
        >>> import torch
        >>> from rowquant.torch import QuantizedEmbedding
        >>> module = QuantizedEmbedding.from_float(torch.nn.Embedding(10, 4).bfloat16())
        >>> module(torch.tensor([1, 2])).dtype
        torch.bfloat16
        """
        from . import quantize

        weight = cls._float_weight(embedding, nn.Embedding)
        return cls(
            quantize(weight), padding_idx=embedding.padding_idx,
            output_dtype=embedding.weight.dtype,
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        rows = torch.ops.rowquant.take(self.codes, self.scales, input)
        if self.output_dtype != torch.float32:  # no Cast in traced and exported graphs
            rows = rows.to(self.output_dtype)
        return rows

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.output_dtype != torch.float32:
            text += f", output_dtype={self.output_dtype}"
        return text


class QuantizedEmbeddingBag(_TableModule):
    """``nn.EmbeddingBag`` for inference on a rowquant table.

    ``forward(input, offsets=None, per_sample_weights=None)`` as in torch: 1-D ``input`` with
    ``offsets`` (bag starts; with ``include_last_offset`` the last one equals ``len(input)``),
    or 2-D ``input`` of fixed-size bags; ``per_sample_weights`` of the shape of ``input``, with
    ``mode="sum"``. ``mode="mean"`` divides by the number of ids that are not ``padding_idx``,
    ``mode="max"`` takes each column's largest value over those ids; empty bags give zeros. One
    difference: with ``include_last_offset=True`` the last offset must equal ``len(input)``
    (torch silently drops the ids after it).

    Parameters
    ----------
    table : rowquant.QuantizedEmbedding
    mode : {"mean", "sum", "max"}, default "mean" (as ``nn.EmbeddingBag``)
    padding_idx : int, optional
        Ids equal to it are left out of the bags and their sizes. As in ``nn.EmbeddingBag``
        it must lie in ``[-num_embeddings, num_embeddings)``; a negative one counts from the
        end.
    include_last_offset : bool, default False
    output_dtype : torch.dtype, default torch.float32
        The floating dtype of the bags forward returns; casting the module sets it too.

    Raises
    ------
    TypeError
        ``table`` is not a :class:`rowquant.QuantizedEmbedding`, ``output_dtype`` not a
        floating dtype.
    ValueError
        ``mode`` is not one of the three, ``padding_idx`` is outside the table.

    Notes
    -----
    ``forward`` raises ValueError for input that is not 1-D or 2-D, offsets that do not fit it
    (missing for 1-D input, given for 2-D, not starting at 0, decreasing, past the end),
    weights of another shape than ``input`` or with a mode other than "sum", tensors that are
    not on the CPU, and a table whose scales are not finite and non-negative; IndexError for
    ids outside ``[0, num_embeddings)``. There is no ``max_norm``.

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
    >>> weights = torch.tensor([[0.5, 2.0], [1.0, 1.0]], dtype=torch.float64)
    >>> bag.double()(torch.tensor([[7, 8], [9, 9]]), per_sample_weights=weights).dtype
    torch.float64
    """

    def __init__(
        self,
        table: _Table,
        mode: str = "mean",
        padding_idx: Optional[int] = None,
        include_last_offset: bool = False,
        output_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(table, padding_idx, output_dtype)
        if mode not in _MODES:
            raise ValueError(f"mode must be 'sum', 'mean' or 'max', got {mode!r}")
        self.mode = mode
        self.include_last_offset = bool(include_last_offset)

    @classmethod
    def from_float(cls, bag: nn.EmbeddingBag) -> "QuantizedEmbeddingBag":
        """Quantize an ``nn.EmbeddingBag``'s weights, keeping its mode, padding_idx and
        include_last_offset, and answering in its weights' dtype.

        Parameters
        ----------
        bag : torch.nn.EmbeddingBag
            Without ``max_norm``; any mode ("sum", "mean", "max"); float16, bfloat16, float32
            or float64 weights.

        Returns
        -------
        QuantizedEmbeddingBag

        Raises
        ------
        TypeError
            ``bag`` is not an ``nn.EmbeddingBag``.
        ValueError
            It has ``max_norm``, or weights with NaN or inf.

        Examples
        --------
        >>> import torch
        >>> from rowquant.torch import QuantizedEmbeddingBag
        >>> float_bag = torch.nn.EmbeddingBag(10, 4, mode="sum", padding_idx=-1).half()
        >>> QuantizedEmbeddingBag.from_float(float_bag)
        QuantizedEmbeddingBag(10, 4, mode='sum', padding_idx=9, output_dtype=torch.float16)
        """
        from . import quantize

        weight = cls._float_weight(bag, nn.EmbeddingBag)
        return cls(
            quantize(weight),
            mode=bag.mode,
            padding_idx=bag.padding_idx,
            include_last_offset=bag.include_last_offset,
            output_dtype=bag.weight.dtype,
        )

    def forward(
        self,
        input: torch.Tensor,  # noqa: A002 (torch's name)
        offsets: Optional[torch.Tensor] = None,
        per_sample_weights: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        pooled = torch.ops.rowquant.embedding_bag(
            self.codes, self.scales, input, offsets, per_sample_weights, self.mode,
            self.padding_idx, self.include_last_offset,
        )
        if self.output_dtype != torch.float32:
            pooled = pooled.to(self.output_dtype)
        return pooled

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.include_last_offset:
            text += ", include_last_offset=True"
        if self.output_dtype != torch.float32:
            text += f", output_dtype={self.output_dtype}"
        return text


class QuantizedLogits(_TableModule):
    """The output layer tied to an embedding table, for inference on a rowquant table:
    ``forward(hidden)`` returns ``hidden @ E.T`` (plus ``bias``), the logits over the table's
    N rows, shape ``hidden.shape[:-1] + (N,)``, for ``hidden`` of shape ``(..., D)``.

    The scores are :meth:`rowquant.QuantizedEmbedding.dot`'s, bit for bit: computed on the
    codes by the same kernels (``torch.ops.rowquant.scores``), the table never dequantized.
    Built from a :class:`QuantizedEmbedding` module of this package, the layer shares that
    module's buffers (the same tensors: one table serves the input embedding and the output
    layer, as tied weights do), or from an ``nn.Embedding`` or ``nn.Linear`` with
    :meth:`from_float`.

    Parameters
    ----------
    table : rowquant.QuantizedEmbedding or rowquant.torch.QuantizedEmbedding
        A module of this package is tied to: its ``codes`` and ``scales`` buffers become this
        module's too (tie modules that are where they will run; a move to another device
        moves each module's buffers separately).
    metric : {"dot", "cosine"}, default "dot"
        ``"cosine"`` divides each score by the row's norm and the query's (0 for a zero row or
        query). The rows' norms are computed on the first call and kept while the table is
        unchanged.
    precision : {"exact", "fast"}, default "exact"
        As for :meth:`rowquant.QuantizedEmbedding.dot`: ``"exact"`` is the float64 dot
        product rounded once to float32, ``"fast"`` quantizes each query to 8 bits and
        multiplies integers (about 1e-3 relative error).
    bias : torch.Tensor, optional
        N values added to the scores (an ``nn.Linear``'s bias), kept as a float32 buffer.
    output_dtype : torch.dtype, optional
        The floating dtype of the logits; by default float32, or the dtype of the module tied
        to. Casting the module (``.half()``, ``.to(torch.bfloat16)``) sets it too, and leaves
        the table and the bias as they are.

    Raises
    ------
    TypeError
        ``table`` is neither, ``output_dtype`` or ``bias`` is not floating.
    ValueError
        ``metric`` or ``precision`` is not one of the two, ``bias`` is not of shape (N,).

    Notes
    -----
    ``forward`` reads ``hidden`` of any float dtype as float32 and raises ValueError for a last
    dimension other than D, for NaN or inf in ``hidden`` (naming its position), for tensors not
    on the CPU and for a table whose scales are not finite and non-negative. Threads: as
    :func:`rowquant.set_num_threads` sets. No gradients: the layer is for inference.

    ``torch.onnx.export`` writes standard operators: the table dequantized by
    ``DequantizeLinear`` (zero point 128, the row scales) and a float32 ``Gemm`` (see
    :func:`rowquant.to_onnx` with ``scores=``); the runtime's float32 sums differ from the
    module's by float32 rounding, and the ``"fast"`` precision exports as the float product.

    Examples
    --------
    >>> import numpy as np, torch, rowquant as rq
    >>> from rowquant.torch import QuantizedEmbedding, QuantizedLogits
    >>> qe = rq.quantize(np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32))
    >>> embedding = QuantizedEmbedding(qe)
    >>> head = QuantizedLogits(embedding)                 # tied: one table for both
    >>> head.codes is embedding.codes
    True
    >>> hidden = torch.randn(2, 5, 8)                     # a model's last hidden states
    >>> logits = head(hidden)
    >>> logits.shape
    torch.Size([2, 5, 100])
    >>> bool((logits[1].numpy() == qe.dot(hidden[1].numpy())).all())   # rowquant's kernels
    True
    >>> cosine = QuantizedLogits(embedding, metric="cosine")
    >>> cosine(embedding(torch.tensor([3, 1, 4]))).argmax(-1)   # each row is nearest itself
    tensor([3, 1, 4])
    """

    bias: Optional[torch.Tensor]

    def __init__(
        self,
        table: Union[_Table, QuantizedEmbedding],
        *,
        metric: str = "dot",
        precision: str = "exact",
        bias: Optional[torch.Tensor] = None,
        output_dtype: Optional[torch.dtype] = None,
    ) -> None:
        if isinstance(table, _TableModule):
            nn.Module.__init__(self)
            self.register_buffer("codes", table.codes)  # the same tensors: tied
            self.register_buffer("scales", table.scales)
            self.padding_idx = None
            self.output_dtype = _float_dtype(
                table.output_dtype if output_dtype is None else output_dtype
            )
        else:
            super().__init__(table, None, torch.float32 if output_dtype is None else output_dtype)
        self.metric = _similarity.check_metric(metric)
        _similarity.check_precision(precision)
        self.precision = str(precision)
        if bias is not None:
            if not isinstance(bias, torch.Tensor) or not bias.is_floating_point():
                raise TypeError(f"bias must be a floating-point tensor, got {bias!r}")
            if tuple(bias.shape) != (self.num_embeddings,):
                raise ValueError(
                    f"bias has shape {tuple(bias.shape)}; it needs one value per row of the "
                    f"table, ({self.num_embeddings},)"
                )
            bias = bias.detach().to(device=self.codes.device, dtype=torch.float32, copy=True)
        self.register_buffer("bias", bias)

    @property
    def in_features(self) -> int:
        """The width of ``hidden`` (the table's D), as ``nn.Linear.in_features``."""
        return self.codes.shape[1]

    @property
    def out_features(self) -> int:
        """The number of logits (the table's N), as ``nn.Linear.out_features``."""
        return self.codes.shape[0]

    def _apply(self, fn, recurse=True):
        """As for the other modules: casts set the dtype of the logits; the bias stays
        float32, added to the float32 scores before the cast."""
        bias = self.bias
        super()._apply(fn, recurse)
        if bias is not None and self.bias is not None and self.bias.dtype != torch.float32:
            self.bias = bias.to(self.bias.device)
        return self

    @classmethod
    def from_float(
        cls,
        module: Union[nn.Embedding, nn.Linear],
        *,
        metric: str = "dot",
        precision: str = "exact",
    ) -> "QuantizedLogits":
        """Quantize the weights of an ``nn.Embedding`` (the table whose rows are scored) or of
        an ``nn.Linear`` output layer (weight ``(N, D)``, and its bias), answering in the
        weights' dtype.

        Parameters
        ----------
        module : torch.nn.Embedding or torch.nn.Linear
            Weights of float16, bfloat16, float32 or float64; an ``nn.Embedding`` without
            ``max_norm``.
        metric, precision
            As for the constructor.

        Returns
        -------
        QuantizedLogits

        Raises
        ------
        TypeError
            ``module`` is neither.
        ValueError
            An embedding with ``max_norm``, weights with NaN or inf.

        Examples
        --------
        >>> import torch
        >>> from rowquant.torch import QuantizedLogits
        >>> linear = torch.nn.Linear(16, 50)
        >>> head = QuantizedLogits.from_float(linear)
        >>> head
        QuantizedLogits(in_features=16, out_features=50, bias=True)
        >>> hidden = torch.randn(4, 16)
        >>> error = (head(hidden) - linear(hidden)).abs().max()  # half a step per weight at most
        >>> bool(error <= (head.scales.max() / 2 * hidden.abs().sum(-1).max()) * 1.001)
        True
        """
        from . import quantize

        bias = None
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().cpu().float().numpy()
            bias = None if module.bias is None else module.bias.detach().cpu()
        else:
            weight = cls._float_weight(module, nn.Embedding)  # TypeError for anything else
        return cls(quantize(weight), metric=metric, precision=precision, bias=bias,
                   output_dtype=module.weight.dtype)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = torch.ops.rowquant.scores(self.codes, self.scales, hidden, self.metric,
                                           self.precision)
        bias = self.bias
        if bias is not None:
            logits = logits + bias
        if self.output_dtype != torch.float32:
            logits = logits.to(self.output_dtype)
        return logits

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, out_features={self.out_features}"
        if self.bias is not None:
            text += ", bias=True"
        if self.metric != "dot":
            text += f", metric={self.metric!r}"
        if self.precision != "exact":
            text += f", precision={self.precision!r}"
        if self.output_dtype != torch.float32:
            text += f", output_dtype={self.output_dtype}"
        return text
