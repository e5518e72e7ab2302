"""Block specs: which columns belong to which modality, and which patients have it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import pandas as pd


def block_presence(X: pd.DataFrame, blocks: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Boolean frame (patients x blocks): True where the patient has at least one value in the block."""
    return pd.DataFrame({name: X[list(columns)].notna().any(axis=1) for name, columns in blocks.items()},
                        index=X.index)


def fusion_subsets(names: Sequence[str], min_size: int = 2) -> list[tuple[str, ...]]:
    """Every subset of ``names`` with at least ``min_size`` members, smallest first, in ``names`` order."""
    return [subset for size in range(min_size, len(names) + 1) for subset in combinations(names, size)]
