"""
How well `index search` tells non-faces from faces on LFW: the null-direction score and dlib's detector.

A gallery of `--identities` x `--per-identity` dlib-150 chips is calibrated as `faceforget index build`
does; then unseen people's chips (distractors), unaligned raw photos and made-up non-face images are
scored. Prints a Markdown table: per group the score range, how many the score flags, how many dlib's
detector finds faceless, and how many `index search` flags (either reason).

    FACEFORGET_DATA=/path/to/lfw python benchmarks/nonface_check.py [--model dlib]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from faceforget.data.face_detect import has_face
from faceforget.data.records import FaceRecord
from faceforget.eval.embed import embed_paths, embed_pixels
from faceforget.index.gallery import Gallery
from faceforget.index.query_quality import QueryQuality, null_images
from faceforget.models.registry import load_model


def _probes(strangers: list[Path], out: Path, n: int = 10) -> dict[str, list[Path]]:
    """Non-face images unlike the calibration's (other greys, other noise seeds) plus distorted faces."""
    rng = np.random.default_rng(123)
    groups: dict[str, list[np.ndarray]] = {
        "flat colours": [np.full((150, 150, 3), rng.integers(0, 256, 3)) for _ in range(n)],
        "uniform noise": [rng.integers(0, 256, (150, 150, 3)) for _ in range(n)],
        "gaussian noise": [128 + rng.uniform(10, 60) * rng.standard_normal((150, 150, 3)) for _ in range(n)],
        "gradients": [np.add.outer(*(np.linspace(0, 255, 150) * rng.random(2)[:, None]))[..., None].repeat(3, 2) / 2
                      for _ in range(n)],
        "colour blocks": [rng.integers(0, 256, (6, 6, 3)).repeat(25, 0).repeat(25, 1) for _ in range(n)],
    }
    faces = [np.asarray(Image.open(p).convert("RGB")) for p in strangers[:n]]
    groups["pixel-shuffled faces"] = [f.reshape(-1, 3)[rng.permutation(f.shape[0] * f.shape[1])].reshape(f.shape)
                                      for f in faces]
    groups["blurred faces (radius 12)"] = [np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(12)))
                                          for f in faces]
    groups["upside-down faces"] = [f[::-1] for f in faces]
    paths = {}
    for name, images in groups.items():
        paths[name] = []
        for i, img in enumerate(images):
            path = out / f"{name.split()[0]}_{i}.png"
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
            paths[name].append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--data", default=os.environ.get("FACEFORGET_DATA"), help="prepared LFW folder")
    ap.add_argument("--model", default="dlib")
    ap.add_argument("--identities", type=int, default=120)
    ap.add_argument("--per-identity", type=int, default=5)
    ap.add_argument("--strangers", type=int, default=300)
    args = ap.parse_args()
    if not args.data:
        raise SystemExit("give --data or set FACEFORGET_DATA to the prepared LFW folder")
    root, model = Path(args.data), load_model(args.model)
    people = sorted(p for p in (root / "dlib150").iterdir())[:args.identities]
    gallery_paths = [f for d in people for f in sorted(d.iterdir())[:args.per_identity]]
    strangers = [sorted(d.iterdir())[0] for d in sorted((root / "distractors_dlib150").iterdir())[:args.strangers]]

    def embed(paths: list[Path]) -> np.ndarray:
        return embed_paths(model, paths, progress=False).embeddings

    records = [FaceRecord(str(p), p.parent.name) for p in gallery_paths]
    gallery = Gallery.build(embed(gallery_paths), records, model_fingerprint="bench",
                            null_embeddings=embed_pixels(model, null_images(model.preprocess.input_size)))
    check = gallery.nonface
    print(f"gallery: {len(gallery)} chips of {len(people)} people; null min {check.null_min:.3f}, faces' 99.9th "
          f"percentile {check.face_high:.3f}, threshold {check.threshold:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        groups = {"unseen people (distractor chips)": strangers,
                  "raw 250x250 photos, not aligned": sorted((root / "raw250_sample").rglob("*.jpg")),
                  **_probes(strangers, Path(tmp))}
        print("| group | n | score min / median / max | flagged by score | no face (dlib) | flagged |\n"
              "|---|---:|---:|---:|---:|---:|")
        for name, paths in groups.items():
            scores = gallery.nonface_scores(embed(paths))
            flags = [QueryQuality(float(s), check.threshold, has_face(p)) for s, p in zip(scores, paths, strict=True)]
            no_face = "n/a" if flags[0].face_detected is None else sum(f.face_detected is False for f in flags)
            print(f"| {name} | {len(paths)} | {scores.min():.3f} / {np.median(scores):.3f} / {scores.max():.3f} | "
                  f"{int((scores > check.threshold).sum())} | {no_face} | {sum(f.probably_not_face for f in flags)} |")


if __name__ == "__main__":
    main()
