"""A KV cache laid out as an inference engine lays it out: storage preallocated for the columns a
call will need, so a decode step writes its column in place (transformers' `DynamicLayer`
concatenates, copying the whole cache in every layer at every token: half a CPU rollout's time).

Rows are the batch's trajectories; a column is one position of the shared layout. Each row's
tokens sit in some of the columns and `mask` says which (rows fed new tokens of different lengths
leave holes; rows that finished get none). The rows being fed are a prefix of the storage,
`active`: rows that finish are moved behind it (`permute`) so the forward pass no longer computes
them, while their keys and values stay for the next call. Rows that start later (a query taking
a finished one's slot) are prefilled apart and `append`ed; when rows leave, their columns become
holes, and `repack` closes them once they are the larger part.

The static decode step (`decode_step.py`) decodes in this storage too, padded to its bucket sizes
(`make_static`), writing the column a position tensor names. Reordering, dropping, appending and
repacking rows work in place wherever the storage has room, so the addresses a compiled graph and
CUDA graphs captured stay valid from call to call; storage rows past those in use are padding.
"""

from __future__ import annotations

import functools
import inspect

import torch

from ..errors import RicepoError


@functools.cache
def _cache_keyword(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def passing(model, cache) -> dict:
    """The forward call's keyword argument that hands it `cache`. transformers 5.24 renamed
    `past_key_values` to `cache` (the old name warns, and goes in 5.40); earlier versions, the GPU
    machine's 5.17 among them, know only the old name."""
    return {_cache_keyword(type(getattr(model, "module", model))): cache}


def returned(out):
    """The cache a forward call returned, under either version's name (as `passing`)."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


@functools.cache  # one class: a compiled step guards on its layers' type
def _layer_class():
    from transformers.cache_utils import DynamicLayer

    class ColumnLayer(DynamicLayer):
        """One attention layer's keys and values in `owner`'s preallocated columns."""

        def __init__(self, owner: ColumnCache):
            super().__init__()
            self.owner = owner
            self.store_k = self.store_v = None
            self.filled = 0

        def update(self, key_states, value_states, *args, **kwargs):
            if self.owner.write is not None:
                # a static decode step: one column, at a position held in a tensor, into storage
                # that keeps its shape and address (what a compiled graph and CUDA graphs need)
                rows = self.owner.row_index[: key_states.shape[0]]
                self.store_k[rows, :, self.owner.write] = key_states.squeeze(2)
                self.store_v[rows, :, self.owner.write] = value_states.squeeze(2)
                return self.store_k[: key_states.shape[0]], self.store_v[: key_states.shape[0]]
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            rows, n = key_states.shape[0], key_states.shape[-2]
            room = max(self.owner.capacity, self.filled + n)
            if self.store_k is None:
                shape = (rows, key_states.shape[1], room, key_states.shape[-1])
                # zeros, not empty: a masked column still enters attention as weight 0 × value
                self.store_k = key_states.new_zeros(shape)
                self.store_v = value_states.new_zeros(shape[:3] + (value_states.shape[-1],))
            elif room > self.store_k.shape[2]:
                self.store_k, self.store_v = (_grown(s, room, self.filled) for s in (self.store_k, self.store_v))
            self.store_k[:rows, :, self.filled : self.filled + n] = key_states
            self.store_v[:rows, :, self.filled : self.filled + n] = value_states
            self.filled += n
            self.keys, self.values = self.store_k[:rows, :, : self.filled], self.store_v[:rows, :, : self.filled]
            return self.keys, self.values

        def apply(self, fn) -> None:
            """Replace the storage's rows by `fn(storage)` (a row selection or permutation)."""
            if self.store_k is not None:
                self.store_k, self.store_v = fn(self.store_k), fn(self.store_v)
                self.keys, self.values = self.store_k[:, :, : self.filled], self.store_v[:, :, : self.filled]

        def replace(self, keys: torch.Tensor, values: torch.Tensor, filled: int) -> None:
            self.store_k, self.store_v, self.filled = keys, values, filled
            self.keys, self.values = keys[:, :, :filled], values[:, :, :filled]

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self.apply(lambda s: s[indices])

    return ColumnLayer


def _grown(store: torch.Tensor, columns: int, filled: int) -> torch.Tensor:
    out = store.new_zeros(store.shape[:2] + (columns,) + store.shape[3:])
    out[:, :, :filled] = store[:, :, :filled]
    return out


class ColumnCache:
    """The model's cache (`past`, a transformers `DynamicCache` whose layers write in place), the
    column mask, and which storage rows are fed (`active`, a prefix)."""

    def __init__(self, model, rows: int, device):
        from transformers.cache_utils import DynamicCache, DynamicLayer

        self.past = DynamicCache(config=model.config)
        kinds = {type(layer) for layer in self.past.layers}
        if kinds != {DynamicLayer}:
            # sliding-window or linear-attention layers keep only part of the sequence: a layout of
            # whole columns would attend past their window
            raise RicepoError(
                f"sampler: {type(model).__name__} has cache layers {sorted(k.__name__ for k in kinds)}; the sampler supports full attention only"
            )
        layer = _layer_class()
        self.past.layers = [layer(self) for _ in self.past.layers]
        self.keyword = _cache_keyword(type(getattr(model, "module", model)))  # the forward's cache argument
        self.rows = rows  # rows in use (storage may hold more: a static decode's padding)
        self.active = rows  # rows fed by the next forward pass: storage rows [0, active)
        self.capacity = 0  # columns allocated
        self.columns = 0  # columns written
        self.mask = torch.zeros((rows, 0), dtype=torch.long, device=device)
        self.write: torch.Tensor | None = None  # static decode: the column the next step writes
        self.row_index: torch.Tensor | None = None
        self._index = self._position = None  # their tensors, kept between calls (fixed addresses)

    def reserve(self, columns: int) -> None:
        """Room for `columns` columns in all, allocated now for the mask and at each layer's next
        write for its keys and values (one copy per call, not per token)."""
        if columns > self.capacity:
            self.capacity = columns
            mask = self.mask.new_zeros((self.mask.shape[0], columns))
            mask[:, : self.columns] = self.mask[:, : self.columns]
            self.mask = mask

    def add_columns(self, mask: torch.Tensor) -> torch.Tensor:
        """Append columns for the active rows (`mask`: active × width, 1 where a row gets a token);
        the mask the forward pass attends with."""
        width = mask.shape[1]
        self.reserve(self.columns + width)
        self.mask[: self.active, self.columns : self.columns + width] = mask
        self.columns += width
        return self.mask[: self.active, : self.columns]

    def _tensors(self) -> list[torch.Tensor]:
        return [self.mask] + [s for layer in self.past.layers if layer.store_k is not None for s in (layer.store_k, layer.store_v)]

    def permute(self, order: torch.Tensor) -> None:
        """Reorder the rows in use: row i of the result is row `order[i]` (a row named twice is
        copied). For a cache static steps decode in, in place where the storage has the rows, so
        that it keeps its address; else into new storage (one copy where in place takes two)."""
        m = len(order)
        if m == self.rows and torch.equal(order, torch.arange(self.rows, device=order.device)):
            return
        if self._index is not None and m <= self.mask.shape[0]:
            for t in self._tensors():
                t[:m] = t.index_select(0, order)
            return

        def fn(s):
            return s.index_select(0, order)

        self.mask = fn(self.mask)
        for layer in self.past.layers:
            layer.apply(fn)

    def select(self, rows: list[int] | torch.Tensor) -> None:
        """Keep storage `rows`, in that order; a row named twice is copied (a shared prefix)."""
        self.permute(torch.as_tensor(rows, device=self.mask.device))
        self.rows = self.active = len(rows)

    def append(self, other: ColumnCache) -> None:
        """Add `other`'s rows after this cache's (their columns from the first on; the shorter
        side's missing columns are masked holes)."""
        columns, capacity = max(self.columns, other.columns), max(self.capacity, other.capacity)
        rows = self.rows + other.rows
        if rows <= self.mask.shape[0] and all(t.shape[min(t.dim() - 1, 2)] >= capacity for t in self._tensors()):
            # in place (the storage keeps its address): continuous batching's usual case
            self.mask[: self.rows, self.columns : columns] = 0
            self.mask[self.rows : rows] = 0
            self.mask[self.rows : rows, : other.columns] = other.mask[: other.rows, : other.columns]
            for mine, theirs in zip(self.past.layers, other.past.layers):
                for s, o in ((mine.store_k, theirs.store_k), (mine.store_v, theirs.store_v)):
                    s[self.rows : rows, :, : other.columns] = o[: other.rows, :, : other.columns]
                mine.replace(mine.store_k, mine.store_v, columns)
            self.rows = self.active = rows
            self.columns = columns
            return

        def joined(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
            # storage may hold more rows than are in use (a static decode's padding): rows counts them
            shape = list(a.shape)
            shape[0], shape[dim] = self.rows + other.rows, capacity
            out = a.new_zeros(shape)
            out.narrow(0, 0, self.rows).narrow(dim, 0, self.columns).copy_(a.narrow(0, 0, self.rows).narrow(dim, 0, self.columns))
            out.narrow(0, self.rows, other.rows).narrow(dim, 0, other.columns).copy_(b.narrow(0, 0, other.rows).narrow(dim, 0, other.columns))
            return out

        self.mask = joined(self.mask, other.mask, 1)
        for mine, theirs in zip(self.past.layers, other.past.layers):
            mine.replace(joined(mine.store_k, theirs.store_k, 2), joined(mine.store_v, theirs.store_v, 2), columns)
        self.rows = self.active = self.rows + other.rows
        self.columns, self.capacity = columns, capacity

    def holes(self) -> int:
        """Columns of the longest row's layout that hold none of its tokens."""
        return self.columns - int(self.mask[: self.rows, : self.columns].sum(1).max())

    def repack(self) -> None:
        """Move each row's tokens, in order, to the last columns of a layout as wide as the longest
        row (keys already carry their positions: attention does not see where a column sits). In
        place: the storage keeps its size and address."""
        n = self.rows
        mask = self.mask[:n, : self.columns]
        width = int(mask.sum(1).max())
        take = torch.sort(mask, dim=1, stable=True).indices[:, -width:]  # holes first, then the row's columns
        self.mask[:n, :width] = mask.gather(1, take)
        self.mask[:n, width:] = 0
        for layer in self.past.layers:
            for s in (layer.store_k, layer.store_v):
                index = take[:, None, :, None].expand(n, s.shape[1], width, s.shape[3])
                s[:n, :, :width] = s[:n, :, : self.columns].gather(2, index)
            layer.replace(layer.store_k, layer.store_v, width)
        self.columns = width

    def make_static(self, rows: int, columns: int) -> None:
        """Ready the storage for static decode steps over at most `rows` rows: at least `rows` rows
        and `columns` columns (kept when it has them, so that consecutive calls reuse the same
        addresses), the mask cleared past the written columns, and a write position tensor.
        Storage rows past `self.rows` are padding: they attend to their column 0 only (never to
        nothing: a row with no key gives NaN) and their results are discarded."""
        store = self.past.layers[0].store_k
        if not (store.shape[0] >= rows and store.shape[2] >= columns and self.mask.shape == (store.shape[0], store.shape[2])):
            mask = self.mask.new_zeros((rows, columns))
            mask[: self.rows, : self.columns] = self.mask[: self.rows, : self.columns]
            self.mask = mask
            for layer in self.past.layers:

                def padded(s: torch.Tensor) -> torch.Tensor:
                    out = s.new_zeros((rows, s.shape[1], columns, s.shape[3]))
                    out[: self.rows, :, : self.columns] = s[: self.rows, :, : self.columns]
                    return out

                layer.replace(padded(layer.store_k), padded(layer.store_v), self.columns)
            self.capacity = columns
        self.mask[:, self.columns :] = 0
        self.mask[self.rows :, 0] = 1
        if self._index is None or len(self._index) != self.mask.shape[0]:
            self._index = torch.arange(self.mask.shape[0], device=self.mask.device)
            self._position = torch.zeros(1, dtype=torch.long, device=self.mask.device)
        self.row_index, self.write = self._index, self._position.fill_(self.columns)
        for t in self._tensors() + [self.write]:
            torch._dynamo.mark_static_address(t)

    def reorder_(self, order: torch.Tensor) -> None:
        """Reorder all storage rows in place (addresses kept): row i becomes row `order[i]`."""
        for t in self._tensors():
            t.copy_(t.index_select(0, order))

    def end_static(self, columns: int) -> None:
        """Back to eager calls after static steps that wrote up to `columns`."""
        self.write = self.row_index = None
        self.columns = columns
        for layer in self.past.layers:
            layer.replace(layer.store_k, layer.store_v, columns)
