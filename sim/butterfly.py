"""Bit-accurate numpy models of the butterfly PE and of the transforms built from it.

Formats (see :mod:`attnforge.configs.butterfly`)
-------------------------------------------------
* Data: ``width``-bit signed integers per real component. A model returns integer
  arrays and an exponent ``scale_log2`` such that ``out * 2**scale_log2`` approximates the
  float result computed on the integer inputs (:func:`descale` does the multiplication).
* Coefficients: ``twiddle_bits``-bit signed Q2.F, ``F = twiddle_bits - 2``; a float
  coefficient ``c`` becomes ``floor(c·2**F + 0.5)`` saturated to the signed range
  (:func:`quantize_coefs`; FFT twiddles from :meth:`ButterflyConfig.twiddle`).

The PE (:func:`pe`, :func:`pe_fft`, :func:`pe_real`)
-----------------------------------------------------
One radix-2 butterfly, in one of two modes chosen per butterfly:

* FFT (complex, decimation-in-time): ``y0 = (x0·2**F + W·x1) / 2**(F+shift)`` and
  ``y1 = (x0·2**F − W·x1) / 2**(F+shift)``, with ``W·x1 = (wr·x1r − wi·x1i) +
  j(wr·x1i + wi·x1r)``: four real products.
* Real 2×2 (butterfly linear layers): ``y0 = (a·x0 + b·x1) / 2**(F+shift)``,
  ``y1 = (c·x0 + d·x1) / 2**(F+shift)`` on the real components; the imaginary inputs are
  ignored and the imaginary outputs are 0. Four real products.

Each sum is formed exactly (no intermediate rounding), divided with **round half up**
(add ``2**(F+shift-1)``, arithmetic shift right by ``F+shift``), then **saturated** to
``[-2**(width-1), 2**(width-1) - 1]`` (never wrapped). ``shift`` is ``SHIFT_MIN`` …
``SHIFT_MAX`` (−4 … 3; negative shifts scale up).

Transforms
----------
* :func:`fft`: N-point radix-2 decimation-in-time FFT (forward, ``exp(-2πi·nk/N)``).
  The input is read in bit-reversed order (a permutation the array's input buffer does
  for free), then stages ``k = 0 … log2(N)-1`` run with stride ``s = 2**k``: pair
  ``p = b·s + j`` combines positions ``2bs + j`` and ``2bs + s + j`` with the twiddle
  ``W_{2s}^j = exp(-2πi·j/(2s))``. The output is in natural order. This is exactly the
  butterfly layer below with twiddle blocks ``[[1, W], [1, −W]]`` applied to the
  bit-reversed input (Dao et al.: FFT = butterfly matrix × bit reversal).
* :func:`butterfly`: a butterfly linear layer, ``log2 N`` real factors, stage ``k`` with
  stride ``2**k``, twiddle shape ``(log2N, N/2, 2, 2)`` (HazyResearch/butterfly,
  ``increasing_stride=True``): ``y[2bs+j] = T[p,0,0]·x[2bs+j] + T[p,0,1]·x[2bs+s+j]``,
  ``y[2bs+s+j] = T[p,1,0]·x[2bs+j] + T[p,1,1]·x[2bs+s+j]``, ``p = b·s + j``. Float
  weights get one power-of-two exponent per stage (:func:`quantize_weights`), added to
  ``scale_log2``.
* :func:`fnet`: FNet token mixing ``Re(FFT_L(FFT_D(x)))`` of an ``L×D`` input: row FFTs,
  then column FFTs of the complex result, keeping the real part.
* :func:`ffn`: FABNet's butterfly FFN, butterfly linear layer → :func:`relu` → butterfly
  linear layer, from two passes of :func:`butterfly`; ``scale_log2`` is the sum of the two
  layers' (ReLU commutes with the positive factor ``2**scale_log2``).

Per-stage scaling (``scaling=``)
--------------------------------
* ``"fixed"`` (FFT and FNet default): ``shift = 1`` on every stage, so an N-point FFT
  returns ``FFT(x)/N`` with ``scale_log2 = log2 N``. A stage's values are partial DFTs
  divided by their length, so they never exceed the largest input magnitude plus the
  rounding and twiddle errors (≤ ½ LSB and ``√2·2**(width-1)·2**-(F+2)`` per stage): with
  ``twiddle_bits ≥ width``, inputs of complex magnitude ≤ ``2**(width-1) − 2·log2 N``
  never saturate. Larger complex inputs can (a complex square wave at full scale has a
  bin of magnitude 4/π × full scale): those outputs saturate. Tiny inputs underflow:
  every stage halves the signal's peak while the rounding noise stays ½ LSB.
* ``"block"`` (butterfly default): block floating point with no overflow. Before each
  stage, ``m`` = the largest ``|component|`` of the stage's input block, ``G`` = the
  stage's coefficient gain bound (FFT: ``2**F + max(|wr|+|wi|)``; real:
  ``max(|a|+|b|, |c|+|d|)``), and the shift is the smallest ``s ≥ SHIFT_MIN`` with
  ``m·G < (2**(width-1) − ½)·2**(F+s)``: the stage cannot saturate, and it shifts no more
  than its worst case needs (negative shifts scale small blocks up, so they keep their
  precision). The block is one vector, or more with ``shared_axes`` (FNet shares one
  exponent over the whole L×D frame, so the second FFT sees aligned rows).
* ``"static"`` (butterfly linear layers on the streaming array): the block policy with the
  input block's maximum taken as full scale, ``m = 2**(width-1)``, so each stage's shift
  depends only on its weights (:func:`butterfly_static_shifts`): no stage can saturate on
  any input, and the hardware needs no look at the data before a stage.
* a sequence of ``log2 N`` ints: those shifts, stage by stage (saturation as documented).

``scale_log2`` is always an int64 array with the batch shape (0-d for one vector).
"""

import math

import numpy as np

from ..configs.butterfly import ButterflyConfig

__all__ = [
    "MODE_FFT", "MODE_REAL",
    "round_shift", "saturate", "quantize_coefs", "quantize_weights", "pe", "pe_fft", "pe_real",
    "bit_reverse", "fft_twiddles", "fft", "butterfly", "butterfly_static_shifts",
    "butterfly_batch_shifts", "fnet", "relu", "ffn", "ffn_batch_shifts",
    "fft_float", "fft_butterfly_twiddles", "butterfly_factor", "butterfly_dense",
    "butterfly_float", "fnet_float", "ffn_float", "descale", "sqnr_db",
]

MODE_FFT = ButterflyConfig.MODE_FFT
MODE_REAL = ButterflyConfig.MODE_REAL

_DEFAULT = ButterflyConfig()


# -- fixed-point primitives ---------------------------------------------------------------


def round_shift(value, sh):
    """``value / 2**sh`` rounded half up: ``(value + 2**(sh-1)) >> sh`` (``sh ≥ 1``)."""
    value = np.asarray(value, dtype=np.int64)
    sh = np.asarray(sh, dtype=np.int64)
    return (value + (np.int64(1) << (sh - 1))) >> sh


def saturate(value, cfg=_DEFAULT, stats=None):
    """Clamp to the signed ``width``-bit range; count clamped values in ``stats["saturated"]``."""
    value = np.asarray(value, dtype=np.int64)
    out = np.clip(value, cfg.data_min, cfg.data_max)
    if stats is not None:
        stats["saturated"] = stats.get("saturated", 0) + int(np.count_nonzero(out != value))
    return out


def quantize_coefs(coefs, cfg=_DEFAULT):
    """Float coefficients as Q2.F integers (round half up, saturate); ints pass unchanged.

    Integer input must already be in the signed ``twiddle_bits`` range.
    """
    coefs = np.asarray(coefs)
    lo, hi = -(1 << (cfg.twiddle_bits - 1)), (1 << (cfg.twiddle_bits - 1)) - 1
    if np.issubdtype(coefs.dtype, np.integer):
        _check_range(coefs, lo, hi, "coefficient")
        return coefs.astype(np.int64)
    q = np.floor(coefs.astype(np.float64) * (1 << cfg.coef_frac) + 0.5)
    return np.clip(q, lo, hi).astype(np.int64)


def quantize_weights(twiddle, cfg=_DEFAULT):
    """Butterfly weights as Q2.F integers with one power-of-two exponent per stage.

    Learned weights are not bounded by the Q2 range ``[-2, 2)`` (a Gaussian init with
    standard deviation 0.7 leaves it every few hundred weights), so each stage ``k`` is
    normalized by ``2**e_k``, ``e_k = floor(log2(max|T_k|))`` (one more if rounding would
    leave the range): its largest weight lands in ``[1, 2)`` and uses every bit of the
    format. ``e_k`` may be negative (small weights gain precision). The hardware never sees
    ``e_k``; the model adds it to ``scale_log2``.

    Parameters
    ----------
    twiddle : array, shape ``(stages, ...)``
        Float weights, or ints already in Q2.F (then every ``e_k = 0``).

    Returns
    -------
    q : int64 array, the shape of ``twiddle``
    exponents : int64 array, shape ``(stages,)``
    """
    twiddle = np.asarray(twiddle)
    stages = twiddle.shape[0]
    if np.issubdtype(twiddle.dtype, np.integer):
        return quantize_coefs(twiddle, cfg), np.zeros(stages, dtype=np.int64)
    if not np.all(np.isfinite(twiddle)):
        raise ValueError("twiddle holds NaN or infinite values")
    hi = (1 << (cfg.twiddle_bits - 1)) - 1
    q = np.zeros(twiddle.shape, dtype=np.int64)
    exponents = np.zeros(stages, dtype=np.int64)
    for k in range(stages):
        peak = float(np.max(np.abs(twiddle[k]))) if twiddle[k].size else 0.0
        e = math.floor(math.log2(peak)) if peak > 0 else 0
        while math.floor(peak * 2.0 ** (cfg.coef_frac - e) + 0.5) > hi:
            e += 1
        exponents[k] = e
        q[k] = quantize_coefs(twiddle[k] * 2.0 ** -e, cfg)
    return q, exponents


def _check_range(values, lo, hi, what):
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"{what} values must be integers, not {values.dtype}")
    if values.size and (values.min() < lo or values.max() > hi):
        bad = values.min() if values.min() < lo else values.max()
        raise ValueError(f"{what} value {int(bad)} is out of range: expected [{lo}, {hi}]")


def _check_data(values, cfg, what="input"):
    _check_range(values, cfg.data_min, cfg.data_max, what)
    return np.asarray(values, dtype=np.int64)


def _finish(total, shift, cfg, stats):
    return saturate(round_shift(total, cfg.coef_frac + np.asarray(shift)), cfg, stats)


# -- the PE ---------------------------------------------------------------------------------


def pe_fft(x0, x1, w, shift=1, cfg=_DEFAULT, stats=None):
    """The complex radix-2 DIT butterfly ``x0 ± W·x1``, scaled by ``2**-shift``.

    Parameters
    ----------
    x0, x1 : tuple of int arrays
        ``(re, im)`` of the two inputs, ``width``-bit signed (broadcastable).
    w : tuple of int arrays
        ``(re, im)`` of the twiddle in Q2.F.
    shift : int or int array
        Extra right shift, ``SHIFT_MIN`` … ``SHIFT_MAX``.

    Returns
    -------
    y0, y1 : tuple of int arrays
        ``(re, im)`` of ``x0 + W·x1`` and ``x0 − W·x1``, rounded half up and saturated.
    """
    (ar, ai), (br, bi), (wr, wi) = [tuple(np.asarray(v, dtype=np.int64) for v in z)
                                    for z in (x0, x1, w)]
    tr = wr * br - wi * bi
    ti = wr * bi + wi * br
    f = cfg.coef_frac
    y0 = (_finish((ar << f) + tr, shift, cfg, stats), _finish((ai << f) + ti, shift, cfg, stats))
    y1 = (_finish((ar << f) - tr, shift, cfg, stats), _finish((ai << f) - ti, shift, cfg, stats))
    return y0, y1


def pe_real(x0, x1, coef, shift=0, cfg=_DEFAULT, stats=None):
    """The real 2×2 butterfly ``y0 = a·x0 + b·x1``, ``y1 = c·x0 + d·x1``, scaled by ``2**-shift``.

    Parameters
    ----------
    x0, x1 : int arrays
        Real inputs, ``width``-bit signed.
    coef : tuple of int arrays
        ``(a, b, c, d)`` in Q2.F (the 2×2 block ``[[a, b], [c, d]]``).
    shift : int or int array
        Extra right shift, ``SHIFT_MIN`` … ``SHIFT_MAX``.

    Returns
    -------
    y0, y1 : int arrays
    """
    x0 = np.asarray(x0, dtype=np.int64)
    x1 = np.asarray(x1, dtype=np.int64)
    a, b, c, d = (np.asarray(v, dtype=np.int64) for v in coef)
    return (_finish(a * x0 + b * x1, shift, cfg, stats),
            _finish(c * x0 + d * x1, shift, cfg, stats))


def pe(x0, x1, coef, mode, shift, cfg=_DEFAULT):
    """The PE exactly as the hardware sees one beat (element-wise over arrays).

    Parameters
    ----------
    x0, x1 : tuple of int arrays
        ``(re, im)`` inputs.
    coef : tuple of 4 int arrays
        Q2.F coefficients: FFT mode uses ``coef[0] + j·coef[1]`` as ``W`` and ignores the
        rest; real mode uses ``(a, b, c, d) = coef``.
    mode : int array
        ``MODE_FFT`` or ``MODE_REAL``.
    shift : int array
        ``SHIFT_MIN`` … ``SHIFT_MAX``.

    Returns
    -------
    y0, y1 : tuple of int arrays
        ``(re, im)`` outputs; in real mode the imaginary parts are 0.
    """
    mode = np.asarray(mode)
    f0, f1 = pe_fft(x0, x1, coef[:2], shift, cfg)
    r0, r1 = pe_real(x0[0], x1[0], coef, shift, cfg)
    fft_mode = mode == MODE_FFT
    zero = np.zeros_like(r0)
    y0 = (np.where(fft_mode, f0[0], r0), np.where(fft_mode, f0[1], zero))
    y1 = (np.where(fft_mode, f1[0], r1), np.where(fft_mode, f1[1], zero))
    return y0, y1


# -- transforms -------------------------------------------------------------------------------


def _log2_length(n, cfg):
    if n < 2 or n & (n - 1) or n > cfg.n_max:
        raise ValueError(f"transform length {n} is out of range: expected a power of two "
                         f"in [2, {cfg.n_max}] (n_max)")
    return n.bit_length() - 1


def bit_reverse(n):
    """The bit-reversal permutation of ``range(n)`` (``n`` a power of two), as an index array."""
    bits = n.bit_length() - 1
    idx = np.arange(n)
    rev = np.zeros(n, dtype=np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return rev


def fft_twiddles(n, cfg=_DEFAULT):
    """Quantized FFT twiddles ``(wr, wi)``, each of shape ``(log2 n, n/2)``, pair order ``b·s + j``.

    Stage ``k`` (stride ``s = 2**k``), pair ``p = b·s + j`` uses ``W_{2s}^j``.
    """
    stages = _log2_length(n, cfg)
    wr = np.zeros((stages, n // 2), dtype=np.int64)
    wi = np.zeros((stages, n // 2), dtype=np.int64)
    for k in range(stages):
        s = 1 << k
        table = np.array([cfg.twiddle(j, 2 * s) for j in range(s)], dtype=np.int64)
        wr[k] = np.tile(table[:, 0], n // (2 * s))
        wi[k] = np.tile(table[:, 1], n // (2 * s))
    return wr, wi


def _pairs(x, s):
    """View ``(..., n)`` as the stage's pairs: ``(x0, x1)`` of shape ``(..., n/(2s), s)``."""
    v = x.reshape(*x.shape[:-1], x.shape[-1] // (2 * s), 2, s)
    return v[..., 0, :], v[..., 1, :]


def _unpairs(y0, y1):
    y = np.stack([y0, y1], axis=-2)
    return y.reshape(*y.shape[:-3], -1)


def _block_max(parts, shared_axes):
    """Largest ``|component|`` per block: over the transform axis and ``shared_axes`` more."""
    m = np.max([np.max(np.abs(p), axis=-1) for p in parts], axis=0)
    if shared_axes:
        m = np.max(m, axis=tuple(range(-shared_axes, 0)), keepdims=True)
    return m


def _block_shift(m, gain, cfg):
    """Smallest ``s ≥ SHIFT_MIN`` with ``m·gain < (2**(width-1) − ½)·2**(F+s)`` (or ``SHIFT_MAX``)."""
    m = np.asarray(m, dtype=np.int64)
    shift = np.full(m.shape, cfg.SHIFT_MAX, dtype=np.int64)
    for s in range(cfg.SHIFT_MAX - 1, cfg.SHIFT_MIN - 1, -1):
        fits = 2 * m * gain < ((1 << cfg.width) - 1) << (cfg.coef_frac + s)
        shift = np.where(fits, s, shift)
    return shift


def _stage_shifts(scaling, stages, kind):
    if isinstance(scaling, str):
        allowed = ("fixed", "block") if kind == "fft" else ("block", "static")
        if scaling not in allowed:
            raise ValueError(f"scaling={scaling!r} is not supported here: expected one of "
                             f"{', '.join(map(repr, allowed))} or a sequence of {stages} shifts")
        return None
    shifts = [int(s) for s in scaling]
    lo, hi = ButterflyConfig.SHIFT_MIN, ButterflyConfig.SHIFT_MAX
    if len(shifts) != stages or not all(lo <= s <= hi for s in shifts):
        raise ValueError(f"scaling={scaling!r}: expected {stages} per-stage shifts, each in "
                         f"[{lo}, {hi}]")
    return shifts


def fft(re, im=None, cfg=_DEFAULT, *, scaling="fixed", shared_axes=0, stats=None):
    """The fixed-point N-point FFT built from :func:`pe_fft` (forward, natural order out).

    Parameters
    ----------
    re, im : int arrays, shape ``(..., N)``
        ``width``-bit signed components; ``im=None`` means a real input. ``N`` is a power of
        two in ``[2, n_max]``.
    cfg : ButterflyConfig
    scaling : {"fixed", "block"} or sequence of int
        The per-stage scaling policy (module docstring).
    shared_axes : int
        With ``"block"``: how many batch axes next to the transform axis share one exponent
        (0: one per vector).
    stats : dict, optional
        Receives ``"saturated"`` (count of saturated output components).

    Returns
    -------
    re, im : int64 arrays, shape ``(..., N)``
        ``(re + j·im) * 2**scale_log2 ≈ numpy.fft.fft(x)``.
    scale_log2 : int64 array, the batch shape
    """
    re = _check_data(re, cfg, "re")
    im = np.zeros_like(re) if im is None else _check_data(im, cfg, "im")
    if re.shape != im.shape:
        raise ValueError(f"re and im differ in shape: {re.shape} vs {im.shape}")
    n = re.shape[-1]
    stages = _log2_length(n, cfg)
    fixed = _stage_shifts(scaling, stages, "fft")
    if isinstance(scaling, str) and scaling == "fixed":
        fixed = [1] * stages
    rev = bit_reverse(n)
    xr, xi = re[..., rev], im[..., rev]
    wr_all, wi_all = fft_twiddles(n, cfg)
    batch = re.shape[:-1]
    scale = np.zeros(batch, dtype=np.int64)
    for k in range(stages):
        s = 1 << k
        wr = wr_all[k].reshape(n // (2 * s), s)
        wi = wi_all[k].reshape(n // (2 * s), s)
        if fixed is not None:
            shift = np.full(batch, fixed[k], dtype=np.int64)
        else:
            gain = (1 << cfg.coef_frac) + int(np.max(np.abs(wr) + np.abs(wi)))
            m = _block_max((xr, xi), shared_axes)
            shift = np.broadcast_to(_block_shift(m, gain, cfg), batch)
        sh = shift[..., None, None]
        (ar, br), (ai, bi) = _pairs(xr, s), _pairs(xi, s)
        (y0r, y0i), (y1r, y1i) = pe_fft((ar, ai), (br, bi), (wr, wi), sh, cfg, stats)
        xr, xi = _unpairs(y0r, y1r), _unpairs(y0i, y1i)
        scale = scale + shift
    return xr, xi, scale


def butterfly(x, twiddle, cfg=_DEFAULT, *, scaling="block", shared_axes=0, stats=None):
    """A fixed-point butterfly linear layer built from :func:`pe_real`.

    Parameters
    ----------
    x : int array, shape ``(..., N)``
        ``width``-bit signed inputs.
    twiddle : array, shape ``(log2 N, N/2, 2, 2)``
        Stage ``k`` (stride ``2**k``), pair ``p = b·2**k + j``, 2×2 block ``twiddle[k, p]``.
        Floats are quantized to Q2.F with a per-stage exponent (:func:`quantize_weights`);
        ints are taken as Q2.F.
    scaling : "block", "static" or sequence of int
        The per-stage scaling policy (module docstring).
    shared_axes : int
        With ``"block"``: batch axes sharing one exponent.
    stats : dict, optional
        Receives ``"saturated"``, and ``"shifts"``: each stage's shift (batch-shaped arrays).

    Returns
    -------
    y : int64 array, shape ``(..., N)``
        ``y * 2**scale_log2 ≈ x @ butterfly_dense(twiddle).T``.
    scale_log2 : int64 array, the batch shape
    """
    x = _check_data(x, cfg, "x")
    n = x.shape[-1]
    stages = _log2_length(n, cfg)
    twiddle = np.asarray(twiddle)
    if twiddle.shape != (stages, n // 2, 2, 2):
        raise ValueError(f"twiddle has shape {twiddle.shape}: expected "
                         f"{(stages, n // 2, 2, 2)} for N={n}")
    t, exponents = quantize_weights(twiddle, cfg)
    fixed = _stage_shifts(scaling, stages, "butterfly")
    if isinstance(scaling, str) and scaling == "static":
        fixed = butterfly_static_shifts(t, cfg)
    batch = x.shape[:-1]
    scale = np.zeros(batch, dtype=np.int64)
    for k in range(stages):
        s = 1 << k
        tk = t[k].reshape(n // (2 * s), s, 2, 2)
        if fixed is not None:
            shift = np.full(batch, fixed[k], dtype=np.int64)
        else:
            gain = int(np.max(np.abs(tk[..., 0]) + np.abs(tk[..., 1])))
            shift = np.broadcast_to(_block_shift(_block_max((x,), shared_axes), gain, cfg), batch)
        if stats is not None:
            stats.setdefault("shifts", []).append(np.array(shift))
        x0, x1 = _pairs(x, s)
        coef = (tk[..., 0, 0], tk[..., 0, 1], tk[..., 1, 0], tk[..., 1, 1])
        y0, y1 = pe_real(x0, x1, coef, shift[..., None, None], cfg, stats)
        x = _unpairs(y0, y1)
        scale = scale + shift + exponents[k]
    return x, scale


def butterfly_static_shifts(q_twiddle, cfg=_DEFAULT):
    """Per-stage shifts of the ``"static"`` policy for quantized weights ``(log2N, N/2, 2, 2)``.

    Stage ``k``: the smallest shift with which a full-scale input (``|x| ≤ 2**(width-1)``)
    cannot saturate, given the stage's gain bound ``max(|a|+|b|, |c|+|d|)``.
    """
    q_twiddle = np.asarray(q_twiddle, dtype=np.int64)
    full = 1 << (cfg.width - 1)
    return [int(_block_shift(full, int(np.max(np.abs(tk[..., 0]) + np.abs(tk[..., 1]))), cfg))
            for tk in q_twiddle]


def butterfly_batch_shifts(x, twiddle, cfg=_DEFAULT):
    """Per-stage shifts of block floating point with one exponent per stage over a whole batch.

    The ``"block"`` policy with every vector of ``x`` (``B×N``) in one block: the shifts a
    streaming array, which cannot look at a stage's data before running it, is programmed
    with so that this batch cannot saturate and keeps its precision (calibration).
    """
    x = np.asarray(x)
    stats = {}
    butterfly(x, twiddle, cfg, scaling="block", shared_axes=max(x.ndim - 1, 0), stats=stats)
    return [int(np.max(s)) for s in stats["shifts"]]


def fnet(x, cfg=_DEFAULT, *, scaling="fixed", stats=None):
    """FNet token mixing ``Re(FFT_L(FFT_D(x)))`` in fixed point, from two passes of :func:`fft`.

    Parameters
    ----------
    x : int array, shape ``(..., L, D)``
        ``width``-bit signed; ``L`` and ``D`` powers of two in ``[2, n_max]``.
    scaling : {"fixed", "block"}
        ``"fixed"``: ``scale_log2 = log2 L + log2 D``. ``"block"``: one block exponent per
        stage over the whole ``L×D`` frame (both passes), so rows and columns stay aligned.
    stats : dict, optional
        Receives ``"saturated"``.

    Returns
    -------
    y : int64 array, shape ``(..., L, D)``
        ``y * 2**scale_log2 ≈ numpy.fft.fft2(x).real``.
    scale_log2 : int64 array, the batch shape (``x.shape[:-2]``)
    """
    if not (isinstance(scaling, str) and scaling in ("fixed", "block")):
        raise ValueError(f"scaling={scaling!r} is not supported: expected 'fixed' or 'block'")
    x = _check_data(x, cfg, "x")
    if x.ndim < 2:
        raise ValueError(f"fnet expects an L×D input (at least 2-D), not shape {x.shape}")
    hr, hi, s1 = fft(x, None, cfg, scaling=scaling, shared_axes=1, stats=stats)
    yr, _, s2 = fft(np.swapaxes(hr, -1, -2), np.swapaxes(hi, -1, -2), cfg,
                    scaling=scaling, shared_axes=1, stats=stats)
    return np.swapaxes(yr, -1, -2), s1[..., 0] + s2[..., 0]



def relu(x):
    """The FFN's activation in the data format: ``max(x, 0)`` on ``width``-bit integers.

    Exact: no rounding, and no saturation is needed (the result, ``0 … 2**(width-1) − 1``,
    lies inside the format). ``x`` keeps its exponent: ``relu(y)·2**s = relu(y·2**s)``.
    """
    return np.maximum(np.asarray(x, dtype=np.int64), 0)


def ffn(x, twiddle1, twiddle2, cfg=_DEFAULT, *, scaling1="block", scaling2="block",
        shared_axes=0, stats=None):
    """FABNet's butterfly FFN in fixed point: ``butterfly`` → :func:`relu` → ``butterfly``.

    Parameters
    ----------
    x : int array, shape ``(..., N)``
        ``width``-bit signed inputs.
    twiddle1, twiddle2 : arrays, shape ``(log2 N, N/2, 2, 2)``
        The two layers' weights (floats: quantized per stage by :func:`quantize_weights`;
        ints: Q2.F).
    scaling1, scaling2 : "block", "static" or sequence of int
        Each layer's per-stage scaling (:func:`butterfly`); the streaming block takes the
        shifts of :func:`ffn_batch_shifts`.
    shared_axes : int
        With ``"block"``: batch axes sharing one exponent, in both layers.
    stats : dict, optional
        Receives ``"saturated"`` (both layers) and ``"shifts"`` (layer 1's stages, then
        layer 2's).

    Returns
    -------
    y : int64 array, shape ``(..., N)``
        ``y * 2**scale_log2 ≈ relu(x @ B1.T) @ B2.T`` (:func:`ffn_float`).
    scale_log2 : int64 array, the batch shape: layer 1's plus layer 2's
    """
    h, s1 = butterfly(x, twiddle1, cfg, scaling=scaling1, shared_axes=shared_axes, stats=stats)
    y, s2 = butterfly(relu(h), twiddle2, cfg, scaling=scaling2, shared_axes=shared_axes,
                      stats=stats)
    return y, s1 + s2


def ffn_batch_shifts(x, twiddle1, twiddle2, cfg=_DEFAULT):
    """Both layers' per-stage shifts calibrated on a batch (:func:`butterfly_batch_shifts`).

    Layer 2 is calibrated on what it will see: the ReLU of layer 1's output with layer 1's
    calibrated shifts. Returns ``(shifts1, shifts2)``.
    """
    shifts1 = butterfly_batch_shifts(x, twiddle1, cfg)
    h, _ = butterfly(x, twiddle1, cfg, scaling=shifts1)
    return shifts1, butterfly_batch_shifts(relu(h), twiddle2, cfg)


# -- float references and measurements --------------------------------------------------------


def fft_float(x):
    """The float reference of :func:`fft`: ``numpy.fft.fft`` over the last axis."""
    return np.fft.fft(x, axis=-1)


def fft_butterfly_twiddles(n):
    """The FFT as a complex butterfly: twiddles ``[[1, W], [1, −W]]`` of shape ``(log2n, n/2, 2, 2)``.

    ``butterfly_dense(fft_butterfly_twiddles(n))[:, bit_reverse(n)]`` is the DFT matrix.
    """
    stages = n.bit_length() - 1
    t = np.zeros((stages, n // 2, 2, 2), dtype=np.complex128)
    for k in range(stages):
        s = 1 << k
        w = np.tile(np.exp(-2j * np.pi * np.arange(s) / (2 * s)), n // (2 * s))
        t[k, :, 0, 0] = 1
        t[k, :, 0, 1] = w
        t[k, :, 1, 0] = 1
        t[k, :, 1, 1] = -w
    return t


def butterfly_factor(twiddle_stage, k):
    """The dense ``N×N`` factor matrix of stage ``k`` (stride ``2**k``) from its ``(N/2, 2, 2)`` blocks."""
    twiddle_stage = np.asarray(twiddle_stage)
    n = 2 * twiddle_stage.shape[0]
    s = 1 << k
    m = np.zeros((n, n), dtype=np.result_type(twiddle_stage.dtype, np.float64))
    for p in range(n // 2):
        b, j = divmod(p, s)
        rows = (2 * b * s + j, 2 * b * s + s + j)
        for i in range(2):
            for c in range(2):
                m[rows[i], rows[c]] = twiddle_stage[p, i, c]
    return m


def butterfly_dense(twiddle):
    """The dense butterfly matrix: the product ``B_{log2N-1} ··· B_1 B_0`` of its factors."""
    twiddle = np.asarray(twiddle)
    n = 2 * twiddle.shape[1]
    m = np.eye(n, dtype=np.result_type(twiddle.dtype, np.float64))
    for k in range(twiddle.shape[0]):
        m = butterfly_factor(twiddle[k], k) @ m
    return m


def butterfly_float(x, twiddle):
    """The float reference of :func:`butterfly`: ``x @ butterfly_dense(twiddle).T``."""
    return np.asarray(x, dtype=np.float64) @ butterfly_dense(twiddle).T


def fnet_float(x):
    """The float reference of :func:`fnet`: ``Re(FFT_L(FFT_D(x)))`` = ``numpy.fft.fft2(x).real``."""
    return np.fft.fft2(np.asarray(x, dtype=np.float64), axes=(-2, -1)).real



def ffn_float(x, twiddle1, twiddle2):
    """The float reference of :func:`ffn`: ``relu(x @ B1.T) @ B2.T``, each ``B`` the dense
    product of its layer's factor matrices (:func:`butterfly_dense`)."""
    return np.maximum(butterfly_float(x, twiddle1), 0.0) @ butterfly_dense(twiddle2).T

def descale(values, scale_log2):
    """``values * 2**scale_log2`` as floats (complex stays complex), ``scale_log2`` broadcast
    over the trailing axes."""
    values = np.asarray(values)
    values = values.astype(np.result_type(values.dtype, np.float64))
    scale = np.asarray(scale_log2, dtype=np.float64)
    return values * np.exp2(scale).reshape(scale.shape + (1,) * (values.ndim - scale.ndim))


def sqnr_db(approx, exact):
    """Signal-to-quantization-noise ratio ``10·log10(Σ|exact|² / Σ|approx − exact|²)`` in dB."""
    exact = np.asarray(exact)
    noise = np.sum(np.abs(np.asarray(approx) - exact) ** 2)
    signal = np.sum(np.abs(exact) ** 2)
    if noise == 0:
        return math.inf
    return float(10 * np.log10(signal / noise))


# -- the streaming FFT array (rtl/butterfly/array.py): cycle model -----------------------------

__all__ += ["fft_array_pipeline", "fft_array_cycles"]


def fft_array_pipeline(n, cfg=_DEFAULT):
    """Registers a beat passes from the streaming FFT array's input to its reorder buffer.

    The array (``lanes = 2**p``, ``n_max = 2**Lmax``) has an input register, then
    ``Lmax - p`` time columns (column ``c`` used by transforms with ``log2 N ≥ Lmax - c``:
    an exchange of ``n_max / (2·lanes) / 2**c`` beats and a PE column of ``COLUMN_LATENCY``
    registers; unused: one register), a return column (an exchange of ``N / (2·lanes)`` beats
    when ``N > lanes``, and a PE column) and ``p - 1`` lane columns (a PE column each).
    """
    lanes = cfg.lanes
    p, lmax, log2n = lanes.bit_length() - 1, cfg.stages_max, _log2_length(n, cfg)
    if n < lanes:
        raise ValueError(f"transform length {n} is out of range for the array: expected "
                         f"lanes={lanes} ≤ N ≤ n_max={cfg.n_max}")
    column = cfg.COLUMN_LATENCY
    regs = 1
    for c in range(lmax - p):
        regs += (1 << (lmax - 1 - p - c)) + column if c >= lmax - log2n else 1
    regs += ((1 << (log2n - 1 - p)) if log2n > p else 0) + column
    regs += (p - 1) * column
    return regs


def fft_array_cycles(lengths, cfg=_DEFAULT):
    """Predict the streaming FFT array's cycles for FFTs streamed back to back.

    :func:`array_cycles` with every transform an FFT.
    """
    return array_cycles(lengths, None, cfg)


__all__ += ["array_cycles"]


def array_cycles(lengths, modes=None, cfg=_DEFAULT):
    """Predict the streaming array's cycles for transforms streamed back to back.

    A cycle replay of the array's flow control. The input accepts one beat of ``lanes``
    samples per cycle into the input slot (a three-beat FIFO in front of the columns, ready
    while it holds fewer than three); a real
    transform (``modes[i]`` :data:`MODE_REAL`) goes first through the input bit-reversal
    buffer (two transforms deep, written one beat a cycle, read into the slot one beat a
    cycle once a transform is complete, through a read register and an output register),
    an FFT (:data:`MODE_FFT`) straight into the slot,
    but only when that buffer is empty. A transform whose length or mode differs from the
    previous one waits in the slot until the columns are empty. The columns move as one
    (:func:`fft_array_pipeline` registers) whenever their last beat can enter the
    three-transform reorder buffer and either the slot holds a beat that did not enter it
    in the cycle before or the columns are between transforms (the enable is computed a
    cycle ahead, from the slot's level); a transform's last beat lands in the buffer a cycle after it leaves
    the columns (the buffer's write register), then the buffer issues one natural-order beat
    per cycle, the output handshake two cycles later (a read register, then the output
    register). Weights are
    taken as written before the stream. Exact when the input is never starved and the
    output never stalled.

    Parameters
    ----------
    lengths : sequence of int
        ``N`` of each transform, in stream order.
    modes : sequence of int, optional
        Each transform's mode (default: all FFTs).

    Returns
    -------
    dict
        ``first_in``, ``last_out`` (int64 arrays: the cycle of each transform's first input
        handshake and of its last output handshake), ``latency`` (``last_out − first_in +
        1``) and ``total`` (first input to last output, inclusive).
    """
    lengths = [int(n) for n in lengths]
    batch = len(lengths)
    modes = [MODE_FFT] * batch if modes is None else [int(v) for v in modes]
    lanes = cfg.lanes
    beats = [n // lanes for n in lengths]
    pipes = {n: fft_array_pipeline(n, cfg) for n in set(lengths)}
    first_in = np.zeros(batch, dtype=np.int64)
    last_out = np.zeros(batch, dtype=np.int64)
    cur = None                                  # (length, mode) in the columns
    pipe = []                                   # each register: None or (transform, beat)
    f_vec = f_beat = 0                          # the array's input
    rev_full = [None, None]                     # the bit-reversal buffer
    rev_w = rev_r = rev_beat = 0
    rev_p = None                                # its read register: (transform, beat)
    rev_o = None                                # its output register: (transform, beat)
    slot = []                                   # the input slot: (transform, beat) each
    entered = 0                                 # beats it took last cycle
    c_beat = 0                                  # beat number at the columns' input
    full = [None] * 3                           # the reorder buffer's regions
    unfreed = None                              # the region read out last cycle
    landing = filling = None                    # (region, transform): its last beat written,
                                                # then in the write register
    w_region = r_region = r_beat = 0
    pending = None                              # the output beat issued last cycle
    out = None                                  # the one issued two cycles ago (its output)
    cycle = 0
    while True:
        if out is not None and out[1]:
            last_out[out[0]] = cycle
            if out[0] == batch - 1:
                break
        tail = pipe[-1] if pipe else None
        room = tail is None or full[w_region] is None
        rev_idle = (rev_full[0] is None and rev_full[1] is None and rev_p is None
                    and rev_o is None)
        front_real = f_vec < batch and modes[f_vec] == MODE_REAL
        if rev_o is not None:
            src = rev_o
        elif f_vec < batch and not front_real and rev_idle:
            src = (f_vec, f_beat)
        else:
            src = None
        boundary = c_beat == 0
        drain = (boundary and slot and any(pipe)
                 and (lengths[slot[0][0]], modes[slot[0][0]]) != cur)
        # the enable (computed a cycle ahead) sees the slot's beats but one entered last cycle
        en = room and (len(slot) > entered or boundary)
        accept = bool(slot) and en and not drain
        slot_ready = len(slot) < 3
        rev_write = front_real and rev_full[rev_w] is None
        rev_issue = (rev_o is None or slot_ready) and rev_full[rev_r] is not None
        # the output reorder buffer's read side (two registers: the read and the output)
        out = pending
        pending = None
        freed = None
        if full[r_region] is not None:
            vec = full[r_region]
            last = r_beat == beats[vec] - 1
            pending = (vec, last)
            r_beat += 1
            if last:
                freed, r_beat = r_region, 0
                r_region = (r_region + 1) % 3
        # the columns
        if en:
            if tail is not None and tail[1] == beats[tail[0]] - 1:
                landing = (w_region, tail[0])
                w_region = (w_region + 1) % 3
            new = None
            if accept:
                new = slot.pop(0)
                vec, beat = new
                if beat == 0 and (lengths[vec], modes[vec]) != cur:
                    cur = (lengths[vec], modes[vec])
                    pipe = [None] * pipes[lengths[vec]]
                c_beat = 0 if beat == beats[vec] - 1 else c_beat + 1
            pipe = [new] + pipe[:-1]
        if unfreed is not None:                 # the writer sees a region free a cycle late
            full[unfreed] = None
        unfreed = freed
        if filling is not None:                 # the write register's last beat landed
            full[filling[0]] = filling[1]
        filling, landing = landing, None
        entered = int(slot_ready and src is not None)
        if entered:
            slot.append(src)
        # the input: straight into the slot, or into the bit-reversal buffer
        took = (src is not None and slot_ready and rev_o is None) or rev_write
        if took:
            if f_beat == 0:
                first_in[f_vec] = cycle
            if rev_write and f_beat == beats[f_vec] - 1:
                rev_full[rev_w] = f_vec
                rev_w ^= 1
            f_beat += 1
            if f_beat == beats[f_vec]:
                f_vec, f_beat = f_vec + 1, 0
        # the bit-reversal buffer's read side
        if rev_o is None or slot_ready:
            rev_o, rev_p = rev_p, None
            if rev_issue:
                vec = rev_full[rev_r]
                rev_p = (vec, rev_beat)
                rev_beat += 1
                if rev_beat == beats[vec]:
                    rev_full[rev_r], rev_beat = None, 0
                    rev_r ^= 1
        cycle += 1
    return {"first_in": first_in, "last_out": last_out, "latency": last_out - first_in + 1,
            "total": int(last_out[-1] - first_in[0] + 1)}


__all__ += ["chained_array_pipeline", "ffn_cycles"]


def chained_array_pipeline(n, cfg=_DEFAULT):
    """Registers a beat passes in the FFN's second array, from its input to its reorder buffer.

    Its columns follow the chained schedule (rtl/butterfly/schedule.py, ``n_max ≥ 4·lanes``;
    below that it is the plain array's, :func:`fft_array_pipeline`): an input register,
    ``Lmax - p - 1`` time columns (column ``c`` used when ``log2 N ≥ Lmax - c``: an exchange of
    ``n_max / (4·lanes) / 2**c`` beats and ``COLUMN_LATENCY`` registers; unused: one register),
    the top column (an exchange of ``N / (2·lanes)`` beats when ``N > lanes``), the return
    column (an exchange of ``N / (4·lanes)`` beats, 1 when ``N = 2·lanes``, none when
    ``N = lanes``) and ``p - 1`` lane columns.
    """
    lanes = cfg.lanes
    p, lmax, log2n = lanes.bit_length() - 1, cfg.stages_max, _log2_length(n, cfg)
    if lmax < p + 2:
        return fft_array_pipeline(n, cfg)
    column = cfg.COLUMN_LATENCY
    regs = 1
    for c in range(lmax - p - 1):
        regs += (1 << (lmax - 2 - p - c)) + column if c >= lmax - log2n else 1
    regs += ((1 << (log2n - 1 - p)) + column) if log2n > p else 1
    regs += (1 << max(log2n - 2 - p, 0) if log2n > p else 0) + column
    return regs + (p - 1) * column


def ffn_cycles(rows, n, cfg=_DEFAULT):
    """Predict the butterfly FFN block's cycles for ``rows`` rows of length ``n`` back to back.

    The first array is :func:`array_cycles` with its reorder buffer replaced by its output
    FIFO, the link register, the second array's input slot and its columns
    (:func:`chained_array_pipeline`), whose reorder buffer then reads out like the first's
    would: every row's last output comes ``4 + chained_array_pipeline(n)`` cycles after the
    single array's (``3 + …`` when ``n = lanes``: the second array's slot sees the second
    beat of a row a cycle after it enters, and rows of one beat have none). Exact when the input is never starved and the output never stalled
    (weights written before the rows).

    Returns the dict of :func:`fft_array_cycles`.
    """
    timing = array_cycles([n] * rows, [MODE_REAL] * rows, cfg)
    last_out = timing["last_out"] + 3 + (n > cfg.lanes) + chained_array_pipeline(n, cfg)
    first_in = timing["first_in"]
    return {"first_in": first_in, "last_out": last_out, "latency": last_out - first_in + 1,
            "total": int(last_out[-1] - first_in[0] + 1)}
