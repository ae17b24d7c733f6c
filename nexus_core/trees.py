"""Consistency checks of a loaded model's tree arrays, before it predicts anything.

skops loads `sklearn.tree._tree.Tree` and `TreePredictor` only because they are on our explicit list, but trusting
the type does not make its arrays safe: scikit-learn's Cython follows child and feature indices without bounds
checks, so a crafted file could make it read outside its arrays. Every tree must be a well-formed binary tree over
the model's inputs. A LightGBM booster is parsed by LightGBM itself when skops restores it; what it parsed must
still describe the estimator around it: as many inputs and classes, and splits on those inputs only. So must a
CatBoost model, which CatBoost parses from its own format.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.tree._tree import TREE_LEAF, TREE_UNDEFINED

from nexus_core.ensemble import is_ensemble, members


class UnsafeModel(ValueError):
    """The model's content is inconsistent: it must not be loaded, whatever the storage does next."""


def check_trees(pipeline: BaseEstimator) -> int:
    """Raise `UnsafeModel` unless every tree of the pipeline's final estimator (of each member's, for an ensemble)
    is consistent; the trees checked."""
    if is_ensemble(pipeline):
        return sum(check_trees(member) for member in members(pipeline))
    estimator = pipeline[-1] if isinstance(pipeline, Pipeline) else pipeline
    n_features = getattr(estimator, "n_features_in_", None)
    if getattr(estimator, "_Booster", None) is not None:
        return _check_booster(estimator.booster_.dump_model(), n_features, getattr(estimator, "n_classes_", None))
    if hasattr(estimator, "get_cat_feature_indices"):  # CatBoost
        return _check_catboost(estimator, pipeline[0] if isinstance(pipeline, Pipeline) else None)
    checked = 0
    for where, tree in _trees(estimator):
        if hasattr(tree, "children_left"):  # sklearn.tree._tree.Tree
            if tree.value.shape[0] != tree.node_count:
                raise UnsafeModel(f"{where}: {tree.value.shape[0]} node values for {tree.node_count} nodes")
            if n_features is not None and tree.n_features != n_features:
                raise UnsafeModel(f"{where}: built for {tree.n_features} features, the model takes {n_features}")
            leaf = tree.children_left == TREE_LEAF
            if (tree.children_right[leaf] != TREE_LEAF).any() or (tree.feature[leaf] != TREE_UNDEFINED).any():
                raise UnsafeModel(f"{where}: a leaf has a right child or a split feature")
            _check_nodes(where, tree.children_left, tree.children_right, tree.feature, leaf, tree.n_features)
        else:  # a histogram gradient boosting TreePredictor
            nodes = tree.nodes
            leaf = nodes["is_leaf"].astype(bool)
            left, right, feature = (nodes[k].astype(np.int64) for k in ("left", "right", "feature_idx"))
            _check_nodes(where, left, right, feature, leaf, n_features)
            categorical = ~leaf & nodes["is_categorical"].astype(bool)
            if (nodes["bitset_idx"][categorical] >= len(tree.raw_left_cat_bitsets)).any():
                raise UnsafeModel(f"{where}: a categorical split points past the tree's category sets")
        checked += 1
    return checked


def _trees(estimator: Any) -> Iterator[tuple[str, Any]]:
    if hasattr(estimator, "tree_"):
        yield type(estimator).__name__, estimator.tree_
    members = getattr(estimator, "estimators_", None)
    for i, member in enumerate(np.ravel(np.asarray(members if members is not None else [], dtype=object))):
        for where, tree in _trees(member):
            yield f"estimator {i} ({where})", tree
    for i, predictors in enumerate(getattr(estimator, "_predictors", None) or []):
        for k, predictor in enumerate(predictors):
            yield f"boosting iteration {i}, tree {k}", predictor


def _check_booster(model: dict, n_features: int | None, n_classes: int | None) -> int:
    if n_features is None or model["max_feature_idx"] + 1 != n_features:
        raise UnsafeModel(f"the booster takes {model['max_feature_idx'] + 1} features; the model {n_features}")
    if n_classes is not None and model["num_class"] != (1 if n_classes == 2 else n_classes):
        raise UnsafeModel(f"the booster scores {model['num_class']} classes; the model has {n_classes}")
    for number, tree in enumerate(model["tree_info"]):
        nodes = [tree["tree_structure"]]
        while nodes:  # a stack, not recursion: a crafted tree may be deep
            node = nodes.pop()
            if "split_feature" in node:
                if not 0 <= node["split_feature"] < n_features:
                    raise UnsafeModel(f"tree {number} splits on feature {node['split_feature']} of {n_features}")
                nodes += [node["left_child"], node["right_child"]]
    return len(model["tree_info"])


def _check_nodes(
    where: str, left: np.ndarray, right: np.ndarray, feature: np.ndarray, leaf: np.ndarray, width: int | None
) -> None:
    nodes = len(leaf)
    if nodes < 1 or not len(left) == len(right) == len(feature) == nodes:
        raise UnsafeModel(f"{where}: node arrays of different lengths")
    inner, index = ~leaf, np.arange(nodes)
    # Trees are stored depth first: a child always comes after its parent, which also rules out cycles.
    for side, children in (("left", left), ("right", right)):
        bad = inner & ((children <= index) | (children >= nodes))
        if bad.any():
            node = int(np.flatnonzero(bad)[0])
            child = int(children[node])
            raise UnsafeModel(f"{where}: node {node}'s {side} child {child} is not in {node + 1}..{nodes - 1}")
    if width is None:
        raise UnsafeModel(f"{where}: the model does not say how many features it takes")
    bad = inner & ((feature < 0) | (feature >= width))
    if bad.any():
        node = int(np.flatnonzero(bad)[0])
        raise UnsafeModel(f"{where}: node {node} splits on feature {int(feature[node])}; the model takes {width}")


def _check_catboost(model: Any, features: Any) -> int:
    width = max((part.stop for part in getattr(features, "output_indices_", {}).values()), default=None)
    inputs = len(model.feature_names_)
    if width is not None and inputs != width:
        raise UnsafeModel(f"the CatBoost model takes {inputs} features; the feature step gives {width}")
    if any(not 0 <= index < inputs for index in model.get_cat_feature_indices()):
        raise UnsafeModel(f"the CatBoost model's categorical features {model.get_cat_feature_indices()} are not inputs")
    names = model.get_params().get("class_names")
    if names is not None and list(names) != list(model.classes_):
        raise UnsafeModel(f"the CatBoost model scores classes {list(model.classes_)}; it was trained for {names}")
    return model.tree_count_
