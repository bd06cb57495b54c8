"""Per-step batch draws: identities and views per batch for each sampler, seeded by (seed, step) only."""
from __future__ import annotations

from collections import Counter

import torch

from faceforget.config import EngineConfig
from faceforget.unlearn.method import ViewBank
from faceforget.unlearn.sampling_plan import draw_indices


def bank(labels: list[int], views: int = 2) -> ViewBank:
    """A bank of len(labels) images x `views` views (image-major rows); only labels and layout matter here."""
    n = len(labels)
    return ViewBank(inputs=torch.zeros(n * views, 1), labels=torch.tensor(labels).repeat_interleave(views),
                    z_original=torch.zeros(n * views, 2), image=torch.arange(n).repeat_interleave(views),
                    views_per_image=views)


FORGET = bank([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])  # 4 identities x 3 photos x 2 views = 24 rows
RETAIN = bank(list(range(10, 30)))  # 20 photos, 40 rows


def cfg(**kw: object) -> EngineConfig:
    return EngineConfig(**{"sampler": "balanced", "forget_per_identity": 3, "retain_batch": 5, **kw})


def test_balanced_batches_hold_p_identities_with_m_views_each():
    config = cfg(forget_identities_per_batch=2)
    drawn = set()
    for step in range(20):
        f_idx, r_idx = draw_indices(config, FORGET, RETAIN, step, True, True)
        counts = Counter(FORGET.labels[f_idx].tolist())
        assert len(counts) == 2 and set(counts.values()) == {3}  # P = 2 identities, m = 3 views each
        assert len(r_idx) == 5 and bool((r_idx < len(RETAIN)).all())
        drawn.add(tuple(sorted(counts)))
    assert len(drawn) > 1  # the identities change from step to step


def test_balanced_without_p_takes_every_forget_identity_and_repeats_views_when_short():
    f_idx, _ = draw_indices(cfg(forget_per_identity=8), FORGET, RETAIN, 0, True, True)
    counts = Counter(FORGET.labels[f_idx].tolist())
    assert counts == {0: 8, 1: 8, 2: 8, 3: 8}  # 6 views per identity exist: drawn with replacement
    f_idx, _ = draw_indices(cfg(forget_per_identity=6), FORGET, RETAIN, 0, True, True)
    assert sorted(f_idx.tolist()) == list(range(24))  # exactly the 6 views of each: no repeats


def test_draws_depend_only_on_seed_and_step_and_respect_the_streams():
    config = cfg(forget_identities_per_batch=2, seed=3)
    first = draw_indices(config, FORGET, RETAIN, 7, True, True)
    again = draw_indices(config, FORGET, RETAIN, 7, True, True)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other_seed = draw_indices(cfg(forget_identities_per_batch=2, seed=4), FORGET, RETAIN, 7, True, True)
    assert not all(torch.equal(a, b) for a, b in zip(first, other_seed, strict=True))
    assert draw_indices(config, FORGET, RETAIN, 7, False, True)[0] is None
    assert draw_indices(config, FORGET, RETAIN, 7, True, False)[1] is None


def test_uniform_and_union_batch_sizes():
    f_idx, r_idx = draw_indices(cfg(sampler="uniform", forget_batch=4), FORGET, RETAIN, 0, True, True)
    assert (len(f_idx), len(r_idx)) == (4, 5)
    f_idx, r_idx = draw_indices(cfg(sampler="union", forget_batch=4), FORGET, RETAIN, 0, True, True)
    assert len(f_idx) + len(r_idx) == 9  # one draw of 4 + 5 rows over both banks, without repeats
    assert len(set(f_idx.tolist())) == len(f_idx) and len(set(r_idx.tolist())) == len(r_idx)
    assert bool((f_idx < len(FORGET)).all() and (r_idx < len(RETAIN)).all())

