"""Typer commands: parse options, build a config, call `faceforget.api`; no numerics here."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Make chosen people unretrievable by a face-retrieval model, keep everyone else, prove it.")


@contextmanager
def _errors() -> Iterator[None]:
    """Turn bad input (ValueError, missing files, OS errors) into one red line and exit code 2."""
    try:
        yield
    except (ValueError, FileNotFoundError, OSError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None


NO_VERIFY = typer.Option(False, "--no-verify", help="load a model.pt that has no .sha256 checksum file (unchecked)")
STRICT_HELP = "exit 1 when a measured acceptance check fails (checks not measured do not fail)"


def _print_verdict(verdict: dict, strict: bool) -> None:
    """Print the compact verdict; with --strict, exit 1 when a measured check failed (2 stays user error)."""
    from faceforget.report.tables import verdict_markdown

    typer.echo(verdict_markdown(verdict))
    if strict and verdict["status"] == "fail":
        raise typer.Exit(code=1)


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"forget list not found: {path}")
    names = [line.strip() for line in path.read_text().splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise ValueError(f"forget list {path} names no identity")
    return names


@app.command()
def protocol(
    data: Path = typer.Option(..., help="dataset: folder per identity, CSV manifest (path,identity), CelebA or "
                              "VGGFace2 root, insightface train.rec"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write split.json"),
    forget: Optional[int] = typer.Option(None, help="number K of forget identities drawn with the seed"),
    forget_list: Optional[Path] = typer.Option(None, help="file with one identity name per line"),
    seed: int = typer.Option(0),
    distractors: Optional[Path] = typer.Option(None, help="folder of distractor identities (gallery only)"),
    min_images: int = typer.Option(5, help="identities with fewer images are left out"),
    test_fraction: float = typer.Option(0.5, help="share of each identity's images held out for evaluation"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip and count unreadable images instead of failing"),
) -> None:
    """Assign every image a protocol role (forget/retain x train/test, distractor) -> split.json."""
    from faceforget import api

    with _errors():
        if (forget is None) == (forget_list is None):
            raise ValueError("give exactly one of --forget K or --forget-list FILE")
        names = _read_names(forget_list) if forget_list is not None else None
        manifest = api.make_split(data, forget=forget, forget_list=names, seed=seed, distractors=distractors,
                                  min_images=min_images, test_fraction=test_fraction, skip_bad=skip_bad, out=output)
    counts = manifest.params.get("counts", {})
    typer.echo(f"wrote {output}: {len(manifest.records)} images, hash {manifest.hash[:16]}, roles {counts}")


@app.command()
def evaluate(
    model: str = typer.Option("dlib", help="registered model name or a saved model.pt"),
    data: Optional[Path] = typer.Option(None, help="dataset root (default: the one stored in the split)"),
    split: Path = typer.Option(..., help="split.json from `faceforget protocol`"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="folder for metrics.json and metrics.md"),
    config: Optional[Path] = typer.Option(None, help="YAML with an `eval:` section"),
    no_verify: bool = NO_VERIFY,
) -> None:
    """Retrieval metrics (R@k, mAP, mAP@R, CS, TAR@FAR) for forget / retain, held-out and seen."""
    from faceforget import api
    from faceforget.report.tables import metrics_markdown

    with _errors():
        cfg = api.load_config(config, None).eval
        result = api.evaluate(model, data, split, cfg=cfg, verify=not no_verify,
                              out=None if output is None else output / "metrics.json")
    table = metrics_markdown({"model": result["metrics"]})
    if output is not None:
        from faceforget.fileio import write_text_atomic

        write_text_atomic(output / "metrics.md", table)
    typer.echo(table)


@app.command()
def unlearn(
    model: str = typer.Option("dlib", help="registered model name or a saved model.pt"),
    data: Optional[Path] = typer.Option(None, help="dataset root (default: the one stored in the split)"),
    split: Path = typer.Option(..., help="split.json from `faceforget protocol`"),
    method: Optional[str] = typer.Option(None, help="unlearning method (default: the config's, dispersion)"),
    config: Optional[Path] = typer.Option(None, help="YAML: method, params, engine, eval"),
    output: Path = typer.Option(..., "-o", "--output", help="run folder"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a finished run (or another config's "
                                   "unfinished one) in the run folder"),
    no_verify: bool = NO_VERIFY,
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
    device: Optional[str] = typer.Option(None, help="torch device for every stage, e.g. cuda (default: config)"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bfloat16 autocast (default: config)"),
) -> None:
    """Unlearn the split's forget identities; write the model, config snapshot and before/after metrics."""
    from faceforget import api
    from faceforget.report.tables import metrics_markdown
    from faceforget.timings import unlearn_seconds

    with _errors():
        result = api.unlearn(model, data, split, method=method, config=config, out=output, overwrite=overwrite,
                             verify=not no_verify, device=device, amp=amp)
        if not result.metrics:  # a torchrun rank other than 0: rank 0 writes and prints
            return
        verdict = api.verdict(output).as_dict()
    m = result.metrics
    typer.echo(metrics_markdown({"original": m["original"], "unlearned": m["unlearned"]}))
    s, t = m["summary"], m["timings"]
    typer.echo(f"E={s['E']:.3f} U={s['U']:.3f} H={s['H']:.3f}; unlearning took {unlearn_seconds(t):.0f} s, "
               f"the whole command {t['total_s']:.0f} s; run folder {output}")
    _print_verdict(verdict, strict)


@app.command()
def audit(
    split: Path = typer.Option(..., help="split.json the run was made with"),
    run: Optional[Path] = typer.Option(None, help="run folder from `faceforget unlearn` (uses its embeddings)"),
    model: Optional[str] = typer.Option(None, help="unlearned model.pt (when no run folder is given)"),
    original_model: str = typer.Option("dlib", "--original", help="the original model"),
    data: Optional[Path] = typer.Option(None, help="dataset root (default: the one stored in the split)"),
    seed: int = typer.Option(0),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="audits.json"),
    no_verify: bool = NO_VERIFY,
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
) -> None:
    """Attack the forgetting: re-enrolment, linear probe, threshold, membership inference (before/after)."""
    from faceforget import api
    from faceforget.report.tables import audit_rows, markdown_table

    with _errors():
        result = api.audit(model, data, split, original_model=original_model, run=run, seed=seed, out=output,
                           verify=not no_verify)
        verdict = api.verdict(run, audits=result["audits"]).as_dict()
    typer.echo(markdown_table(*audit_rows(result["audits"])))
    _print_verdict(verdict, strict)


index_app = typer.Typer(no_args_is_help=True, help="FAISS gallery: build, search, delete identities, rebuild.")
app.add_typer(index_app, name="index")


@index_app.command("build")
def index_build(
    data: Path = typer.Option(..., help="folder per identity or CSV (or the dataset root with --split)"),
    output: Path = typer.Option(..., "-o", "--output", help="gallery folder"),
    model: str = typer.Option("dlib"),
    split: Optional[Path] = typer.Option(None, help="index the split's held-out + distractor images"),
    kind: str = typer.Option("auto", help="flat | ivf | ivfpq | hnsw | auto (IVF above 100k rows)"),
    backend: str = typer.Option("torch", help="embedding backend: torch | onnxruntime (the exported graph, CPU)"),
    no_verify: bool = NO_VERIFY,
) -> None:
    """Embed a dataset and save it as a searchable gallery."""
    from faceforget import api

    with _errors():
        gallery = api.index_build(model, data, output, split=split, kind=kind, verify=not no_verify,
                                  backend=backend)
    typer.echo(f"gallery {output}: {len(gallery)} rows, {len(gallery.identities)} identities, kind {gallery.kind}")


@index_app.command("search")
def index_search(
    gallery: Path = typer.Option(..., help="gallery folder"),
    images: list[Path] = typer.Argument(..., help="query images"),
    model: str = typer.Option("dlib", help="the model the gallery was built with"),
    k: int = typer.Option(5),
    no_verify: bool = NO_VERIFY,
) -> None:
    """Top-k identities for each query image; a query that is probably not a face is flagged."""
    from faceforget import api

    with _errors():
        results = api.index_search(gallery, model, list(images), k=k, verify=not no_verify)
    for result in results:
        typer.echo(f"{result.query}:")
        if (warning := result.quality.warning()) is not None:
            typer.secho(f"  warning: {warning}", fg=typer.colors.YELLOW)
        for rank, hit in enumerate(result.hits, 1):
            typer.echo(f"  {rank}. {hit.identity}  cos={hit.score:.3f}  {hit.path}")


@index_app.command("delete")
def index_delete(
    gallery: Path = typer.Option(..., help="gallery folder"),
    identities: list[str] = typer.Argument(..., help="identity names to remove"),
) -> None:
    """Remove identities' rows from the gallery (deletion alone is not forgetting: see `unlearn`)."""
    from faceforget import api

    with _errors():
        removed = api.index_delete(gallery, list(identities))
    typer.echo(f"removed {removed} rows")


@index_app.command("rebuild")
def index_rebuild(
    gallery: Path = typer.Option(..., help="gallery folder"),
    model: str = typer.Option(..., help="the new (unlearned) model.pt"),
    no_verify: bool = NO_VERIFY,
) -> None:
    """Re-embed the whole gallery with a new model; atomic swap, the old gallery survives a crash."""
    from faceforget import api

    with _errors():
        new = api.index_rebuild(gallery, model, verify=not no_verify)
    typer.echo(f"rebuilt {gallery}: {len(new)} rows with model {new.model_fingerprint}")


@app.command()
def benchmark(
    config: Path = typer.Option(..., help="benchmark YAML (e.g. configs/lfw.yaml)"),
) -> None:
    """Every method x seed on one protocol; resumes finished cells; writes results.{json,csv,md} and plots."""
    from faceforget.benchmark import load_benchmark_config, run_benchmark
    from faceforget.report.benchmark_tables import benchmark_markdown

    with _errors():
        cfg = load_benchmark_config(config)
        results = run_benchmark(cfg)
    typer.echo(benchmark_markdown(results))
    typer.echo(f"results in {cfg.out}")


@app.command()
def report(
    run: Path = typer.Option(..., help="run folder from `faceforget unlearn` (audits.json is used if present)"),
    split: Path = typer.Option(..., help="split.json the run was made with"),
    data: Optional[Path] = typer.Option(None, help="dataset root (default: the one stored in the split)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="folder (default: the run folder)"),
    gallery_check: Optional[Path] = typer.Option(None, help="gallery.json (gallery top-1 before/after, as `demo` "
                                                 "writes it) for the verdict"),
) -> None:
    """Write report.html (self-contained), report.md and report.json for a run."""
    from faceforget import api

    with _errors():
        written = api.report(run, split, data=data, out=output, gallery=gallery_check)
    typer.echo(f"verdict: {written['verdict']['headline']}")
    typer.echo(f"wrote {(output or run) / 'report.html'}")


@app.command()
def align(
    data: Path = typer.Option(..., help="raw images: folder per identity, CSV, CelebA or VGGFace2 root"),
    output: Path = typer.Option(..., "-o", "--output", help="folder for the aligned crops (one folder per identity)"),
    template: str = typer.Option("arcface112", help="arcface112 (SFace, ArcFace, iResNet) or dlib150 (dlib)"),
    landmarks: Optional[Path] = typer.Option(None, help="five-point landmark CSV (e.g. LFW's landmarks.csv); "
                                             "CelebA and VGGFace2 roots bring their own"),
    detect: bool = typer.Option(False, "--detect", help="detect faces and landmarks with dlib where none are given"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip and list unreadable images instead of failing"),
) -> None:
    """Warp every image onto a 5-point template (LMedS similarity, JPEG q95); resumes an interrupted run."""
    from faceforget import api

    with _errors():
        report = api.align(data, output, template=template, landmarks=landmarks, detect=detect, skip_bad=skip_bad)
    typer.echo(f"{output}: {report['written']} crops written, {report['kept']} kept, {report['detected']} detected, "
               f"{len(report['bad_files'])} bad files skipped")


@app.command()
def export(
    model: str = typer.Option(..., help="run/model.pt, a registered model name or a model file spec"),
    output: Path = typer.Option(..., "-o", "--output", "--onnx", help="where to write model.onnx"),
    opset: int = typer.Option(17, help="ONNX opset"),
) -> None:
    """Write a model as ONNX (dynamic batch; input float RGB [0,255] NCHW), checked against onnxruntime."""
    from faceforget import api

    with _errors():
        error = api.export(model, output, opset=opset)
    typer.echo(f"wrote {output}: onnxruntime matches torch to {error:.2g} (max abs difference)")


@app.command()
def demo(
    data: Optional[Path] = typer.Option(None, help="prepared LFW folder (default: $FACEFORGET_DATA, then the cache)"),
    output: Path = typer.Option(Path("demo"), "-o", "--output", help="folder for split, run, gallery, report"),
    forget: int = typer.Option(10, help="number of identities to forget"),
    seed: int = typer.Option(0),
    config: Optional[Path] = typer.Option(None, help="YAML overriding the dispersion defaults"),
    download: bool = typer.Option(False, "--download", help="download and prepare LFW if it is not found"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a finished demo run in the output folder"),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
) -> None:
    """The whole job on LFW (research use only): protocol, unlearn, evaluate, audit, rebuild gallery, report."""
    from faceforget import api
    from faceforget.report.tables import audit_rows, markdown_table, metrics_markdown

    with _errors():
        result = api.demo(data, output, forget=forget, seed=seed, config=config, download=download,
                          overwrite=overwrite)
    m = result["metrics"]
    typer.echo(metrics_markdown({"original": m["original"], "unlearned": m["unlearned"]}))
    typer.echo(markdown_table(*audit_rows(result["audits"])))
    g = result["gallery"]
    typer.echo(f"gallery: forget photos whose top-1 is the same person: {g['before']['forget_top1_same_identity']:.3f}"
               f" before, {g['after']['forget_top1_same_identity']:.3f} after the rebuild")
    typer.echo(f"search the rebuilt gallery: faceforget index search --gallery {output / 'gallery'} "
               f"--model {output / 'run' / 'model.pt'} FACE.jpg")
    typer.echo(f"report: {output / 'report.html'}; the demo took {m['timings']['total_s']:.0f} s")
    _print_verdict(result["verdict"], strict)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
