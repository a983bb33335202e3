"""A fitted histogram gradient boosting's predictions for a few rows, all trees at once.

scikit-learn's ``HistGradientBoostingRegressor.predict`` enters its compiled predictor once per
tree (an OpenMP region each, 10-26 µs), and encodes its categorical features with a
``ColumnTransformer``: for one row, ~400 trees cost milliseconds of calls around a few
comparisons each. Here the fitted trees are laid end to end in flat arrays once per model, and
a few rows walk every tree together, one level per step, with the compiled predictor's rules
(``_predictor.pyx``: missing values, categories known or not, ``x <= threshold``). The leaves'
values are added to the baseline tree after tree, in the order ``_raw_predict`` adds them, so
the floats are the same; the link's inverse makes the predictions.

These are scikit-learn's private attributes (checked on 1.9): a model without one of them, or
of a shape not known here (several trees per iteration, categories that are not integers), is
predicted by the estimator itself (``flatten`` answers None). Nothing is written to a model:
the flat trees are kept beside it, keyed weakly, for every request that shares it.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

# Beyond a few dozen rows, the compiled predictor's loop over rows wins over numpy's steps.
MAX_ROWS = 64


@dataclass(frozen=True)
class FlatTrees:
    """Every tree's nodes end to end, their children numbered in the whole."""

    roots: np.ndarray  # (trees,) index of each tree's first node
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray  # bool
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    leaf: np.ndarray  # bool
    # A categorical node's row of ``category_left`` (0: not categorical), whose column c says
    # whether category c goes left; the last column is for a missing or negative value.
    category_row: np.ndarray
    category_left: np.ndarray  # (categorical nodes + 1, 257) bool
    baseline: float
    inverse_link: Any
    encoding: Encoding


@dataclass(frozen=True)
class Encoding:
    """The estimator's own input encoding: categorical columns (their fitted categories,
    sorted integers) first, as ordinal codes, then the numerical ones as floats."""

    categorical: tuple[int, ...]
    categories: tuple[np.ndarray, ...]
    numerical: tuple[int, ...]


_cache: weakref.WeakKeyDictionary[Any, tuple[object, FlatTrees | None]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def is_boosting(estimator: Any) -> bool:
    """Whether ``estimator`` is the boosting whose trees answer each row on its own."""
    return isinstance(estimator, HistGradientBoostingRegressor)


def predict_few(estimator: Any, features: pd.DataFrame) -> np.ndarray | None:
    """``estimator.predict(features)`` for a fitted HistGradientBoostingRegressor and a few
    rows; None when the estimator must answer itself (more rows, or a shape not known here)."""
    if not isinstance(estimator, HistGradientBoostingRegressor) or len(features) > MAX_ROWS:
        return None
    if not isinstance(features, pd.DataFrame):
        return None
    flat = flat_trees(estimator)
    if flat is None or list(features.columns) != list(getattr(estimator, "feature_names_in_", [])):
        return None
    matrix = encode(flat.encoding, features)
    if matrix is None:
        return None
    return np.asarray(flat.inverse_link(raw_predict(flat, matrix)))


def flat_trees(estimator: Any) -> FlatTrees | None:
    """The estimator's trees flattened, once per fitted state (a refit has new predictors)."""
    predictors = getattr(estimator, "_predictors", None)
    with _lock:
        cached = _cache.get(estimator)
    if cached is not None and cached[0] is predictors:
        return cached[1]
    try:
        flat = flatten(estimator)
    except (AttributeError, KeyError, TypeError, ValueError):
        flat = None  # a scikit-learn whose private attributes differ: its own predict
    with _lock:
        _cache[estimator] = (predictors, flat)
    return flat


def flatten(estimator: Any) -> FlatTrees | None:
    """Lay the fitted trees end to end (None: a shape not known here)."""
    if estimator.n_trees_per_iteration_ != 1 or getattr(estimator, "_in_fit", False):
        return None
    encoding = read_encoding(estimator)
    if encoding is None:
        return None
    trees = [iteration[0] for iteration in estimator._predictors]
    sizes = np.array([len(tree.nodes) for tree in trees])
    roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    offsets = np.repeat(roots, sizes)
    nodes = np.concatenate([tree.nodes for tree in trees])
    leaf = nodes["is_leaf"].astype(bool)
    categorical = nodes["is_categorical"].astype(bool) & ~leaf
    missing_left = nodes["missing_go_to_left"].astype(bool)
    category_row = np.zeros(len(nodes), dtype=np.intp)
    category_row[categorical] = np.arange(1, categorical.sum() + 1)
    return FlatTrees(
        roots=roots,
        feature=nodes["feature_idx"].astype(np.intp),
        threshold=nodes["num_threshold"].astype(np.float64),
        missing_left=missing_left,
        left=nodes["left"].astype(np.intp) + offsets,
        right=nodes["right"].astype(np.intp) + offsets,
        value=nodes["value"].astype(np.float64),
        leaf=leaf,
        category_row=category_row,
        category_left=tabulate_categories(estimator, trees, nodes, categorical, missing_left),
        baseline=float(np.asarray(estimator._baseline_prediction).reshape(-1)[0]),
        inverse_link=estimator._loss.link.inverse,
        encoding=encoding,
    )


def tabulate_categories(
    estimator: Any,
    trees: list[Any],
    nodes: np.ndarray,
    categorical: np.ndarray,
    missing_left: np.ndarray,
) -> np.ndarray:
    """For each categorical node, whether each category goes left, as the compiled predictor
    decides: left if the node's bitset holds it, right if fit saw it, else the missing way
    (also the way of a missing or negative value, in the last column)."""
    bitset_counts = np.array([len(tree.raw_left_cat_bitsets) for tree in trees])
    sizes = np.array([len(tree.nodes) for tree in trees])
    bitset_offsets = np.repeat(np.concatenate([[0], np.cumsum(bitset_counts)[:-1]]), sizes)
    left_bitsets = np.concatenate([tree.raw_left_cat_bitsets for tree in trees])
    known_bitsets, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
    rows = (nodes["bitset_idx"].astype(np.intp) + bitset_offsets)[categorical]
    features = np.asarray(f_idx_map, dtype=np.intp)[nodes["feature_idx"][categorical]]
    in_left = _bits(left_bitsets[rows])
    in_known = _bits(known_bitsets[features])
    missing = missing_left[categorical][:, None]
    table = np.where(in_left, True, np.where(in_known, False, missing))
    table = np.concatenate([table, missing], axis=1)
    return np.concatenate([np.zeros((1, 257), dtype=bool), table])


def _bits(bitsets: np.ndarray) -> np.ndarray:
    """(n, 8) 32-bit words -> (n, 256) bools, bit v of word v // 32 in column v."""
    as_bytes = np.ascontiguousarray(bitsets, dtype="<u4").view(np.uint8)
    return np.unpackbits(as_bytes, axis=1, bitorder="little").astype(bool)


def read_encoding(estimator: Any) -> Encoding | None:
    """The fitted categorical encoding, where it is the one ``_preprocess_X`` builds on
    integer categories (None: another one, which only the estimator knows)."""
    preprocessor = estimator._preprocessor
    if preprocessor is None:
        return None
    encoder = preprocessor.named_transformers_["encoder"]
    mask = np.asarray(estimator.is_categorical_, dtype=bool)
    categories = tuple(np.asarray(values) for values in encoder.categories_)
    if not all(values.dtype.kind in "iu" for values in categories):
        return None
    if not all((np.diff(values) > 0).all() for values in categories):
        return None
    return Encoding(
        categorical=tuple(int(i) for i in np.flatnonzero(mask)),
        categories=categories,
        numerical=tuple(int(i) for i in np.flatnonzero(~mask)),
    )


# Integers up to 2**53 are exact as floats: categories compared as floats compare as integers.
EXACT_INTEGERS = 2**53


def encode(encoding: Encoding, features: pd.DataFrame) -> np.ndarray | None:
    """The features as the estimator's preprocessor gives them: ordinal codes of the
    categorical columns (unknown: NaN) first, then the numerical columns as floats.

    The frame is read as floats once (each column cast as on its own: the same values);
    categorical columns must hold integers, which floats hold exactly up to 2**53.
    """
    kinds = [dtype.kind for dtype in features.dtypes]
    if not all(kinds[i] in "iu" for i in encoding.categorical):
        return None
    values = features.to_numpy(dtype=np.float64)
    categorical = values[:, list(encoding.categorical)]
    if categorical.size and np.abs(categorical).max() > EXACT_INTEGERS:
        return None
    matrix = np.empty((len(features), len(encoding.categorical) + len(encoding.numerical)))
    for j, known in enumerate(encoding.categories):
        column = categorical[:, j]
        codes = np.searchsorted(known, column).clip(max=len(known) - 1)
        matrix[:, j] = np.where(known[codes] == column, codes, np.nan)
    matrix[:, len(encoding.categorical) :] = values[:, list(encoding.numerical)]
    return matrix


def raw_predict(flat: FlatTrees, matrix: np.ndarray) -> np.ndarray:
    """The baseline plus every tree's leaf, added tree after tree, for each row of ``matrix``.

    All (row, tree) pairs walk down together, one level per step, those at a leaf dropped."""
    trees = len(flat.roots)
    node = np.tile(flat.roots, len(matrix))
    walking = np.flatnonzero(~flat.leaf[node])
    while len(walking):
        at = node[walking]
        values = matrix[walking // trees, flat.feature[at]]
        goes_left = _goes_left(flat, at, values)
        node[walking] = np.where(goes_left, flat.left[at], flat.right[at])
        walking = walking[~flat.leaf[node[walking]]]
    leaves = flat.value[node].reshape(len(matrix), trees)
    # Added one after the other from the baseline, as the estimator adds its trees.
    start = np.full((len(matrix), 1), flat.baseline)
    return np.cumsum(np.concatenate([start, leaves], axis=1), axis=1)[:, -1]


def _goes_left(flat: FlatTrees, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The compiled predictor's rule at nodes ``at``: a missing value goes the node's missing
    way, a number left when at most the threshold, a category as its node's table says."""
    missing = np.isnan(values)
    goes_left = np.where(missing, flat.missing_left[at], values <= flat.threshold[at])
    table_row = flat.category_row[at]
    categorical = table_row > 0
    if categorical.any():
        category = values[categorical]
        column = np.where(np.isnan(category) | (category < 0), 256, category).astype(np.intp)
        goes_left[categorical] = flat.category_left[table_row[categorical], column]
    return goes_left
