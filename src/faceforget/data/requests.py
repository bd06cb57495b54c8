"""
Sequential deletion requests: a split's forget identities arriving in several requests (docs/protocol.md).

Request k asks to forget the k-th of `n` equal shares of the split's forget identities (sorted names, cut in
order: the split already chose them at random). Before it arrives, a later request's people are ordinary
retained people: their photos are retain_* in the manifests of the earlier requests. Requests accumulate: the
manifest of request k forgets requests 1..k, because an operator keeps each request's photos for as long as
the model must stay audited (the audits need them); the last manifest is the split itself.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from faceforget.data.records import SplitManifest

_AS_RETAINED = {"forget_train": "retain_train", "forget_test": "retain_test"}


def request_identities(manifest: SplitManifest, requests: int) -> list[list[str]]:
    """The forget identity names of each of `requests` requests, in arrival order (sizes differ by <= 1)."""
    names = manifest.forget_identities
    if not 1 <= requests <= len(names):
        raise ValueError(f"cannot cut {len(names)} forget identities into {requests} requests "
                         f"(need 1 <= requests <= {len(names)})")
    return [part.tolist() for part in np.array_split(np.array(names, dtype=object), requests)]


def request_manifests(manifest: SplitManifest, requests: int) -> list[SplitManifest]:
    """One manifest per request: the k-th forgets requests 1..k, later requests' identities are retained."""
    groups = request_identities(manifest, requests)
    out = []
    for k in range(1, requests):
        later = {name for group in groups[k:] for name in group}
        records = [replace(r, role=_AS_RETAINED.get(r.role, r.role)) if r.identity in later else r
                   for r in manifest.records]
        params = manifest.params | {"request": k, "requests": requests}
        out.append(SplitManifest.from_records(records, params, manifest.data_root, manifest.distractor_root))
    return [*out, manifest]
