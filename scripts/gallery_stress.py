"""
Race writers on one saved gallery and count how often every deletion survives (issue 10's acceptance check).

Each writer is its own fresh interpreter (multiprocessing "spawn", like separate `faceforget` commands)
calling the functions the CLI calls. Trials:
- two concurrent deletes: two workers, started and waiting, delete different identities at the same instant;
- delete during rebuild: a rebuild with the real model starts; once it has taken its snapshot and embedded
  its first batch, a waiting worker deletes an identity; the rebuild then finishes and commits.
A trial passes when both workers succeed, the gallery loads, every deleted identity is absent and every
other row is present unchanged (id, path, identity). Generated noise images, so no face data is needed.

    python scripts/gallery_stress.py [--identities 30] [--per-identity 4] [--model dlib]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import tempfile
import time
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

CTX = mp.get_context("spawn")


def _delete(gallery: str, name: str, ready: Event, go: Event, done: Synchronized) -> None:
    from faceforget.index.gallery import delete_saved  # what `faceforget index delete` calls

    ready.set()
    go.wait(120)
    delete_saved(gallery, [name])
    done.value = time.time()


def _rebuild(gallery: str, model_spec: str, snapshot: Event, last_batch: Synchronized) -> None:
    from faceforget.eval.embed import embed_paths
    from faceforget.index.rebuild import rebuild
    from faceforget.models.registry import load_model

    model = load_model(model_spec)

    def on_batch(n: int) -> None:
        if n == 1:
            snapshot.set()
        last_batch.value = time.time()
    rebuild(gallery, lambda paths: embed_paths(model, paths, batch_size=16, progress=False).embeddings,
            model_fingerprint="stress-rebuild", batch_size=16, progress=False, on_batch=on_batch)


def _make_images(root: Path, identities: int, per_identity: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(identities):
        for j in range(per_identity):
            path = root / f"person{i:03d}" / f"{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _check(gallery: Path, template_rows: list, deleted: set[str], fingerprint: str | None) -> bool:
    from faceforget.index.gallery import Gallery

    try:
        back = Gallery.load(gallery)
    except (OSError, ValueError) as exc:
        print(f"    gallery unusable: {exc}")
        return False
    want = [r for r in template_rows if r.identity not in deleted]
    ok = back.rows == want and not (back.identities & deleted)
    if fingerprint is not None:
        ok &= back.model_fingerprint == fingerprint
    if not ok:
        print(f"    {len(back)} rows (want {len(want)}), deleted still present: {sorted(back.identities & deleted)}")
    return ok


def _start(target: Callable, *args: object) -> mp.Process:
    p = CTX.Process(target=target, args=args)
    p.start()
    return p


def _wait_ready(events: list, workers: list[mp.Process], limit_s: float = 300) -> None:
    """Wait until every event is set, giving up early if a worker died."""
    end = time.time() + limit_s
    while not all(e.is_set() for e in events) and time.time() < end:
        if any(p.exitcode not in (None, 0) for p in workers):
            return
        time.sleep(0.02)


def concurrent_deletes(template: Path, work: Path, rows: list, names: list[str], trials: int) -> int:
    rng, passed = np.random.default_rng(1), 0
    for t in range(trials):
        gallery = work / f"deletes{t}"
        shutil.copytree(template, gallery)
        pair = {str(n) for n in rng.choice(names, 2, replace=False)}
        ready, done, go = [CTX.Event() for _ in pair], [CTX.Value("d", 0.0) for _ in pair], CTX.Event()
        workers = [_start(_delete, str(gallery), n, r, go, d) for n, r, d in zip(pair, ready, done, strict=True)]
        _wait_ready(ready, workers)
        go.set()
        for p in workers:
            p.join(120)
        ok = all(p.exitcode == 0 for p in workers) and _check(gallery, rows, pair, None)
        passed += ok
        print(f"  trial {t + 1:2d}: delete {sorted(pair)} -> {'ok' if ok else 'FAILED'}")
    return passed


def delete_during_rebuild(template: Path, work: Path, rows: list, names: list[str], trials: int,
                          model: str) -> tuple[int, int]:
    rng, passed, raced = np.random.default_rng(2), 0, 0
    for t in range(trials):
        gallery = work / f"rebuild{t}"
        shutil.copytree(template, gallery)
        name = str(rng.choice(names))
        ready, go, done = CTX.Event(), CTX.Event(), CTX.Value("d", 0.0)
        snapshot, last_batch = CTX.Event(), CTX.Value("d", 0.0)
        deleter = _start(_delete, str(gallery), name, ready, go, done)
        _wait_ready([ready], [deleter])
        rebuilder = _start(_rebuild, str(gallery), model, snapshot, last_batch)
        _wait_ready([snapshot], [rebuilder])
        go.set()
        deleter.join(120)
        rebuilder.join(300)
        during = 0 < done.value < last_batch.value  # the delete committed before the rebuild's last batch
        raced += during
        ok = deleter.exitcode == 0 and rebuilder.exitcode == 0 and _check(gallery, rows, {name}, "stress-rebuild")
        passed += ok
        print(f"  trial {t + 1:2d}: delete {name} {'during' if during else 'NOT during'} the rebuild -> "
              f"{'ok' if ok else 'FAILED'}")
    return passed, raced


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--identities", type=int, default=30)
    ap.add_argument("--per-identity", type=int, default=4)
    ap.add_argument("--model", default="dlib", help="model the rebuild embeds with (registered name or model.pt)")
    ap.add_argument("--delete-trials", type=int, default=20)
    ap.add_argument("--rebuild-trials", type=int, default=10)
    args = ap.parse_args()

    from faceforget import api
    from faceforget.index.gallery import Gallery

    with tempfile.TemporaryDirectory(prefix="gallery_stress_") as tmp:
        work = Path(tmp)
        _make_images(work / "images", args.identities, args.per_identity, 150)
        t0 = time.perf_counter()
        api.index_build(args.model, work / "images", work / "template", progress=False)
        rows = Gallery.load(work / "template").rows
        names = sorted({r.identity for r in rows})
        print(f"gallery: {len(rows)} rows, {len(names)} identities, model {args.model} "
              f"(built in {time.perf_counter() - t0:.1f} s)")
        print(f"two concurrent deletes, {args.delete_trials} trials:")
        deletes_ok = concurrent_deletes(work / "template", work, rows, names, args.delete_trials)
        print(f"delete during rebuild, {args.rebuild_trials} trials:")
        rebuild_ok, raced = delete_during_rebuild(work / "template", work, rows, names, args.rebuild_trials,
                                                  args.model)
    print(f"two concurrent deletes: {deletes_ok}/{args.delete_trials} trials with both deletions applied, every "
          "other row kept and the gallery usable")
    print(f"delete during rebuild: {rebuild_ok}/{args.rebuild_trials} trials with the deletion kept, every other row "
          f"kept and the gallery usable (the delete landed mid-rebuild in {raced}/{args.rebuild_trials})")


if __name__ == "__main__":
    main()
