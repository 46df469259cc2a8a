"""DropBlock in Triton: seeds from counter-based Philox, blocks by two scans, no host sync.

Seeds (arXiv 1810.12890, Algorithm 1) fall only where a whole block fits. Valid slot
``s = map * positions + position`` (row-major inside the valid region; ``map = n * C + c``
per channel, ``n`` with ``shared_channels``) is a seed when word ``s % 4`` of
``philox(seed, counter=s // 4)`` is below ``round(gamma * 2**32)``: one independent
Bernoulli(gamma) draw per slot (to 2**-32), four slots per Philox call. A seed at corner
``c`` drops ``[c, c + k)`` per dim, as in :mod:`convdrop.ops.sampling`.

Kernels (launches: forward 3, or 2 with scale "expected"; backward 2; mask 2):

* ``_seed_kernel`` packs the seeds of all slots into a bit map, ``ceil(trials / 8)``
  bytes (about 1/24 of the units for 14x14 maps and block 7), freed after the call.
* ``_map_kernel`` tiles (channels, rows, cols) with a halo of ``k - 1`` (none when a
  map fits one tile), reads the seed bits and dilates them on chip: a running max of
  the last seed column along each row, then of the last hit row along each column.
  A unit is dropped when the last seed is less than ``k`` behind it. Modes: COUNT
  atomically adds dropped units to a device int64 counter; APPLY reads ``x`` once,
  writes ``x * factor`` with the dropped units zeroed, the factor made on the device
  from the counter; MASK stores the bool mask.

Global traffic of a forward: one read of ``x``, one write of ``out``, the bit map
written once and read twice, 8 bytes of counter and 4 of factor. Backward saves
nothing but ``seed`` and ``factor``. Only 1d (N, C, L) and 2d (N, C, H, W) maps:
3d raises NotImplementedError (the dispatcher uses the generic path there).

Verified under TRITON_INTERPRET=1 and by compiling for sm_90; not yet timed on a GPU.
Tiles hold up to 64 x 64 units (1d: 1024); a block over 33 on a map that needs
several tiles widens them to 2 (k - 1) lanes, which is correct but spills registers.
"""

from __future__ import annotations

import os

import torch

from convdrop.ops.gamma import clip_block

try:
    import triton
    import triton.language as tl
except ImportError:  # the module stays importable; available() says False
    triton = None

__all__ = ["available", "backward", "forward", "mask", "seed_map"]

_COUNT, _APPLY, _MASK = 0, 1, 2  # _map_kernel modes
_FROM_COUNTER, _CONSTANT, _LOADED = 0, 1, 2  # where APPLY's factor comes from
_SEED_BLOCK = 1024  # Philox counters per program: 4096 slots, 512 bytes of bits
_LANES = 2048  # lanes per _map_kernel program
_INT32_LIMIT = 2**31 - 1


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    """Triton is importable and can run: on CUDA, or on the CPU under TRITON_INTERPRET=1."""
    return triton is not None and (_interpreted() or torch.cuda.is_available())


if triton is not None:

    @triton.jit
    def _max(a, b):
        return tl.maximum(a, b)

    @triton.jit
    def _hit(r, threshold):
        return r.to(tl.int64) < threshold  # r is uint32: zero-extended, so P = t / 2**32

    @triton.jit
    def _factor(counter_ptr, factor_ptr, numel, factor_value, factor_limit,
                FACTOR: tl.constexpr):
        """float32 multiplier: numel / kept from the counter (0 when nothing is kept; at
        most ``factor_limit``, the output dtype's largest value, so float16 saturates
        rather than overflows), the constant ``factor_value``, or the forward's, loaded."""
        if FACTOR == 0:
            total = numel + tl.zeros((), tl.int64)  # numel == 1 would arrive as a constexpr
            kept = total - tl.load(counter_ptr)
            ratio = total.to(tl.float64) / tl.maximum(kept, 1).to(tl.float64)
            ratio = tl.minimum(ratio, factor_limit + tl.zeros((), tl.float64))
            factor = tl.where(kept > 0, ratio, 0.0).to(tl.float32)
        elif FACTOR == 1:
            factor = factor_value + tl.zeros((), tl.float32)  # a float when interpreted
        else:
            factor = tl.load(factor_ptr)
        return factor

    @triton.jit
    def _seed_kernel(seed_ptr, bits_ptr, counter_ptr, trials, nbytes, threshold,
                     BLOCK: tl.constexpr, ZERO_COUNTER: tl.constexpr, WIDE: tl.constexpr):
        pid = tl.program_id(0)
        if WIDE:
            pid = pid.to(tl.int64)
        if ZERO_COUNTER:  # saves the fill launch; the COUNT launch runs after this one
            if pid == 0:
                tl.store(counter_ptr, tl.zeros((), tl.int64))
        counters = pid * BLOCK + tl.arange(0, BLOCK)
        r0, r1, r2, r3 = tl.randint4x(tl.load(seed_ptr), counters)
        slot = counters * 4
        nibble = ((_hit(r0, threshold) & (slot < trials)).to(tl.uint8)
                  | ((_hit(r1, threshold) & (slot + 1 < trials)).to(tl.uint8) << 1)
                  | ((_hit(r2, threshold) & (slot + 2 < trials)).to(tl.uint8) << 2)
                  | ((_hit(r3, threshold) & (slot + 3 < trials)).to(tl.uint8) << 3))
        low, high = tl.split(tl.reshape(nibble, (BLOCK // 2, 2)))  # counters 2b, 2b + 1
        offs = pid * (BLOCK // 2) + tl.arange(0, BLOCK // 2)
        tl.store(bits_ptr + offs, low | (high << 4), mask=offs < nbytes)

    @triton.jit
    def _map_kernel(bits_ptr, src_ptr, dst_ptr, counter_ptr, factor_ptr,
                    C, H, W, VH, VW, KH, KW,
                    s_n, s_c, s_h, s_w, d_n, d_c, d_h, d_w,
                    chunks, tiles, tiles_w, out_h, out_w, halo_h, halo_w, numel, factor_value,
                    factor_limit, MODE: tl.constexpr, FACTOR: tl.constexpr, SHARED: tl.constexpr,
                    BC: tl.constexpr, MR: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
                    WIDE: tl.constexpr):
        pid = tl.program_id(0)  # one grid axis: the others are capped at 65535
        if WIDE:
            pid = pid.to(tl.int64)
        pid0 = pid // tiles  # (sample, channel chunk)
        pid1 = (pid % tiles).to(tl.int32)  # spatial tile
        n = pid0 // chunks
        c0 = (pid0 % chunks) * BC
        i = tl.arange(0, TH)[None, :, None]
        j = tl.arange(0, TW)[None, None, :]
        h = (pid1 // tiles_w) * out_h - halo_h + i  # (1, TH, 1)
        w = (pid1 % tiles_w) * out_w - halo_w + j  # (1, 1, TW)
        rows = tl.arange(0, MR)[:, None, None]  # the maps whose seeds this tile reads
        if SHARED:
            m = n + rows
            map_ok = rows == 0
        else:
            m = n * C + c0 + rows
            map_ok = c0 + rows < C
        seed_ok = map_ok & (h >= 0) & (h < VH) & (w >= 0) & (w < VW)
        slot = (m * VH + h) * VW + w
        byte = tl.load(bits_ptr + (slot >> 3), mask=seed_ok, other=0).to(tl.int32)
        seed = seed_ok & (((byte >> (slot & 7).to(tl.int32)) & 1) != 0)
        # Dilation: the last seed at or before each column, then the last hit row.
        last_w = tl.where(seed, j, -TW - KW)
        if TW > 1:
            last_w = tl.associative_scan(last_w, 2, _max)
        last_h = tl.where(last_w > j - KW, i, -TH - KH)
        if TH > 1:  # 1d maps are one row: no column pass
            last_h = tl.associative_scan(last_h, 1, _max)
        dropped = last_h > i - KH  # (MR, TH, TW)
        inside = (i >= halo_h) & (h < H) & (j >= halo_w) & (w < W)  # this tile's units
        if MODE == 0:
            total = tl.sum((dropped & inside & map_ok).to(tl.int32)).to(tl.int64)
            if SHARED:
                total = total * C
            tl.atomic_add(counter_ptr, total, sem="relaxed")  # read by the next launch
        else:
            c = c0 + tl.arange(0, BC)[:, None, None]
            ok = inside & (c < C)
            d_off = n * d_n + c * d_c + h * d_h + w * d_w
            if MODE == 2:
                tl.store(dst_ptr + d_off, dropped, mask=ok)
            else:
                factor = _factor(counter_ptr, factor_ptr, numel, factor_value, factor_limit,
                                 FACTOR)
                if FACTOR != 2:  # one program publishes the factor for backward
                    if pid == 0:
                        tl.store(factor_ptr, factor)
                x = tl.load(src_ptr + n * s_n + c * s_c + h * s_h + w * s_w, mask=ok, other=0)
                if x.dtype == tl.float64:
                    y = x * factor.to(tl.float64)
                else:
                    y = x.to(tl.float32) * factor
                y = tl.where(dropped, 0.0, y).to(dst_ptr.dtype.element_ty)
                tl.store(dst_ptr + d_off, y, mask=ok)


def _pow2(v: int) -> int:
    return 1 << max(0, v - 1).bit_length()


def _tile(size: int, k: int, cap: int) -> tuple[int, int, int, int]:
    """(lanes, halo, units per tile, tiles) along one dim. A side that fits ``cap``
    lanes is one tile without halo; a longer one overlaps tiles by ``k - 1`` lanes."""
    if _pow2(size) <= cap:
        return _pow2(size), 0, size, 1
    lanes = max(cap, _pow2(2 * (k - 1)))  # the halo wastes at most half the lanes
    out = lanes - (k - 1)
    return lanes, k - 1, out, -(-size // out)


def _dims(shape: tuple[int, ...], block: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """((H, kh), (W, kw)) with 1d seen as H = 1; 3d is not handled here."""
    if len(shape) not in (3, 4):
        raise NotImplementedError(f"Triton DropBlock handles 1d and 2d maps, got shape {shape}")
    spatial = tuple(shape[2:])
    block = clip_block(spatial, tuple(block))
    if len(spatial) == 1:
        return (1, 1), (spatial[0], block[0])
    return (spatial[0], block[0]), (spatial[1], block[1])


def _strides4(t: torch.Tensor) -> tuple[int, int, int, int]:
    s = t.stride()
    return (s[0], s[1], 0, s[2]) if t.dim() == 3 else (s[0], s[1], s[2], s[3])


def _span(t: torch.Tensor) -> int:
    return 1 + sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))


def _seed_bits(shape: tuple[int, ...], seed: torch.Tensor, gamma: float,
               block: tuple[int, ...], shared: bool,
               counter: torch.Tensor | None) -> torch.Tensor:
    """Packed seed indicators of every valid slot: uint8 (ceil(trials / 8),), bit s % 8
    of byte s // 8 for slot s. Also zeroes ``counter`` when given."""
    (h, kh), (w, kw) = _dims(shape, block)
    maps = shape[0] if shared else shape[0] * shape[1]
    trials = maps * (h - kh + 1) * (w - kw + 1)
    nbytes = -(-trials // 8)
    bits = torch.empty(nbytes, dtype=torch.uint8, device=seed.device)
    threshold = min(2**32, max(0, round(gamma * 2**32)))
    grid = (max(1, -(-trials // (4 * _SEED_BLOCK))),)
    _seed_kernel[grid](seed, bits, bits if counter is None else counter, trials, nbytes,
                       threshold, BLOCK=_SEED_BLOCK, ZERO_COUNTER=counter is not None,
                       WIDE=trials > _INT32_LIMIT // 2)
    return bits


def _factor_limit(out: torch.Tensor | None) -> float:
    """The largest factor the output dtype holds (float32's for float64: the factor is fp32)."""
    floating = out is not None and out.is_floating_point()  # a mask launch writes bools
    dtype = out.dtype if floating and out.dtype != torch.float64 else torch.float32
    return float(torch.finfo(dtype).max)


def _launch(bits: torch.Tensor, shape: tuple[int, ...], block: tuple[int, ...],
            shared: bool, mode: int, src: torch.Tensor | None = None,
            dst: torch.Tensor | None = None, counter: torch.Tensor | None = None,
            factor: torch.Tensor | None = None, factor_mode: int = _LOADED,
            factor_value: float = 0.0) -> None:
    """One _map_kernel launch over the whole tensor; absent tensors are dummies."""
    (h, kh), (w, kw) = _dims(shape, block)
    n, c = shape[:2]
    one_d = len(shape) == 3
    th, halo_h, out_h, tiles_h = _tile(h, kh, 64)
    tw, halo_w, out_w, tiles_w = _tile(w, kw, 1024 if one_d else 64)
    if mode == _COUNT and shared:  # one mask per sample, counted C times
        bc, chunks = 1, 1
    else:
        bc = min(_pow2(c), max(1, _LANES // (th * tw)))
        chunks = -(-c // bc)
    dummy = bits
    src_t = src if src is not None else dummy
    dst_t = dst if dst is not None else dummy
    s = _strides4(src) if src is not None else (0, 0, 0, 0)
    d = _strides4(dst) if dst is not None else (0, 0, 0, 0)
    numel = n * c * h * w
    spans = [_span(t) for t in (src, dst) if t is not None]
    wide = max([numel, 8 * bits.numel()] + spans)
    _map_kernel[(n * chunks * tiles_h * tiles_w,)](
        bits, src_t, dst_t, counter if counter is not None else dummy,
        factor if factor is not None else dummy,
        c, h, w, h - kh + 1, w - kw + 1, kh, kw, *s, *d,
        chunks, tiles_h * tiles_w, tiles_w, out_h, out_w, halo_h, halo_w, numel, factor_value,
        _factor_limit(dst), MODE=mode, FACTOR=factor_mode, SHARED=shared, BC=bc,
        MR=1 if shared else bc, TH=th, TW=tw, WIDE=wide > _INT32_LIMIT // 2,
        num_warps=8 if bc * th * tw >= 4096 else 4)


def _check(t: torch.Tensor, seed: torch.Tensor) -> None:
    """Metadata only (no sync): the seed must be one int64 on the tensor's device."""
    if seed.dtype != torch.int64 or seed.numel() != 1 or seed.device != t.device:
        raise ValueError(f"seed must be an int64 tensor of shape (1,) on {t.device}, "
                         f"got {seed.dtype} {tuple(seed.shape)} on {seed.device}")


def forward(x: torch.Tensor, seed: torch.Tensor, gamma: float, block: tuple[int, ...],
            shared_channels: bool, scale: str, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DropBlock forward: (out, factor).

    Args:
        x (Tensor[N, C, L] | Tensor[N, C, H, W]): fp16/bf16/fp32/fp64, any strides.
        seed (Tensor[1], int64): on x's device, drawn by the caller.
        gamma: the seed rate for this map and (clipped) block.
        scale: "batch" (factor = numel / kept over the whole tensor, 0 if nothing is
            kept) or "expected" (1 / (1 - p)); p >= 1 gives zeros and factor 0.

    Returns:
        out with x's shape, dtype and layout (``empty_like``), and factor, a float32
        0-dim tensor on x's device. Three launches (two for "expected"), no host sync.
    """
    _check(x, seed)
    shape = tuple(x.shape)
    _dims(shape, block)
    factor = torch.zeros((), dtype=torch.float32, device=x.device)
    if p >= 1.0:
        return torch.zeros_like(x), factor
    if x.numel() == 0:
        return torch.empty_like(x), factor.fill_(1.0 / (1.0 - p) if scale == "expected" else 0)
    out = torch.empty_like(x)
    counter = torch.empty(1, dtype=torch.int64, device=x.device) if scale == "batch" else None
    bits = _seed_bits(shape, seed, gamma, block, shared_channels, counter)
    if counter is not None:
        _launch(bits, shape, block, shared_channels, _COUNT, counter=counter)
        _launch(bits, shape, block, shared_channels, _APPLY, x, out, counter, factor,
                _FROM_COUNTER)
    else:
        _launch(bits, shape, block, shared_channels, _APPLY, x, out, factor=factor,
                factor_mode=_CONSTANT, factor_value=1.0 / (1.0 - p))
    return out, factor


def backward(grad: torch.Tensor, seed: torch.Tensor, gamma: float, block: tuple[int, ...],
             shared_channels: bool, factor: torch.Tensor) -> torch.Tensor:
    """grad * factor with the forward's units zeroed, the mask redrawn from ``seed``.

    Args:
        grad (Tensor[N, C, L] | Tensor[N, C, H, W]): any strides; the result is laid
            out like it. factor: the forward's float32 0-dim tensor. Two launches.
    """
    _check(grad, seed)
    shape = tuple(grad.shape)
    _dims(shape, block)
    out = torch.empty_like(grad)
    if grad.numel() == 0:
        return out
    bits = _seed_bits(shape, seed, gamma, block, shared_channels, None)
    _launch(bits, shape, block, shared_channels, _APPLY, grad, out, factor=factor.float())
    return out


def mask(shape: tuple[int, ...], seed: torch.Tensor, gamma: float, block: tuple[int, ...],
         shared_channels: bool) -> torch.Tensor:
    """The units ``forward`` zeroes: bool (N, C, *spatial) on seed's device, True = dropped
    (a p >= 1 forward zeroes everything whatever this says). Two launches."""
    shape = tuple(int(s) for s in shape)
    _dims(shape, block)
    out = torch.empty(shape, dtype=torch.bool, device=seed.device)
    if out.numel() == 0:
        return out
    bits = _seed_bits(shape, seed, gamma, block, shared_channels, None)
    _launch(bits, shape, block, shared_channels, _MASK, dst=out)
    return out


def seed_map(shape: tuple[int, ...], seed: torch.Tensor, gamma: float,
             block: tuple[int, ...], shared_channels: bool) -> torch.Tensor:
    """The seeds behind :func:`mask`: bool (maps, *valid) where ``maps`` is N * C (N when
    shared) and ``valid`` the valid region, True at a block's first corner."""
    shape = tuple(int(s) for s in shape)
    dims = _dims(shape, block)
    valid = tuple(s - k + 1 for s, k in dims)[2 - (len(shape) - 2):]
    maps = shape[0] if shared_channels else shape[0] * shape[1]
    total = maps * valid[0] * (valid[1] if len(valid) == 2 else 1)
    if total == 0:
        return torch.zeros((maps, *valid), dtype=torch.bool, device=seed.device)
    bits = _seed_bits(shape, seed, gamma, block, shared_channels, None)
    shifts = torch.arange(8, dtype=torch.uint8, device=seed.device)
    flat = ((bits[:, None] >> shifts) & 1).reshape(-1)[:total]
    return flat.view(maps, *valid).bool()
