"""Assemble docs/results.md from the benchmark results under benchmarks/results/.

    python benchmarks/results_doc.py            # rewrite docs/results.md
    python benchmarks/results_doc.py --check    # exit 1 if docs/results.md is not what this writes

Each benchmark script writes its table to benchmarks/results/NAME.md (and its figures to NAME.json);
this script puts every table in one page, each with fixed text saying what it measures and how to
read it. Figures in that text are read from the table or its JSON, never typed here, so the page
stays true when a benchmark is re-run. A note about one particular run (a model since replaced,
a busy machine) is tied to that run's date and is left out once the table is measured again.
A table this script has no section for is an error: a new benchmark must be given its text here.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUTPUT = ROOT / "docs" / "results.md"

# Bytes a one-tile 32x32 stream carries beyond its payload (header, CRC-32, kind; docs/format.md).
ONE_TILE_OVERHEAD_BYTES = 9  # the header and the tile's kind (its checksum rides in the coder's state)


@dataclass
class Result:
    """One benchmark's output: its Markdown (as the script wrote it) and its JSON, if any."""

    name: str
    markdown: str
    data: dict | None

    def table(self, index: int = 0) -> list[dict[str, str]]:
        """The index-th Markdown table as rows of {column: cell}."""
        tables: list[list[list[str]]] = []
        previous_was_table = False
        for line in self.markdown.splitlines():
            is_table = line.startswith("|")
            if is_table and not previous_was_table:
                tables.append([])
            if is_table:
                tables[-1].append(split_row(line))
            previous_was_table = is_table
        head, _rule, *rows = tables[index]
        return [dict(zip(head, row)) for row in rows]

    def bench_row(self, codec: str) -> dict:
        """A codec's figures from an `icnn bench` JSON (its one dataset)."""
        (dataset,) = self.data["datasets"]
        for row in dataset["results"]:
            if row["codec"] == codec:
                return row
        raise SystemExit(f"results_doc: {self.name}.json has no codec {codec}")

    def bpd(self, codec: str) -> float:
        return self.bench_row(codec)["bpd"]

    def date(self) -> str | None:
        """The run's date (YYYY-MM-DD) from its JSON."""
        return self.data["date"][:10] if self.data and "date" in self.data else None


def escape_pipes_in_first_column(markdown: str) -> str:
    """Escape a '|' written inside a table's first column (latent_bits.md's 'z2|z1').

    A row with k more cells than its table's header has k pipes in its first column; unescaped,
    Markdown would shift the row's cells k columns to the right."""
    lines, columns = [], 0
    for line in markdown.splitlines():
        if not line.startswith("|"):
            columns = 0
        elif not columns:
            columns = len(split_row(line))
        elif len(split_row(line)) > columns:
            cells = split_row(line)
            extra = len(cells) - columns
            line = "| " + " | ".join(["\\|".join(cells[:extra + 1]), *cells[extra + 1:]]) + " |"
        lines.append(line)
    return "\n".join(lines)


def split_row(line: str) -> list[str]:
    """A Markdown table row's cells, split at its unescaped pipes."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def load_result(name: str) -> Result:
    md = RESULTS / f"{name}.md"
    if not md.is_file():
        raise SystemExit(f"results_doc: {md.relative_to(ROOT)} is missing (run benchmarks/{name}.py)")
    js = RESULTS / f"{name}.json"
    markdown = escape_pipes_in_first_column(md.read_text().strip())
    return Result(name, markdown, json.loads(js.read_text()) if js.is_file() else None)


def compared(a: float, b: float) -> str:
    """'9.7 % larger' / '2.2 % smaller': a against b."""
    change = 100 * (a / b - 1)
    return f"{abs(change):.1f} % {'larger' if change > 0 else 'smaller'}"


# -- the text of each section ----------------------------------------------------------------------


def cifar10_text(r: Result) -> str:
    row = r.bench_row("icnn")  # a bare icnn: the model icnn compress picks for a thumbnail, cifar10
    icnn, nll = row["bpd"], row["nll_bpd"]
    (dataset,) = r.data["datasets"]
    overhead = 8 * ONE_TILE_OVERHEAD_BYTES * dataset["images"] / dataset["dims"]
    return (
        f"The shipped `cifar10` model writes {icnn:.3f} bpd on these {dataset['images']:,} test images: files "
        f"{compared(icnn, r.bpd('jpegxl'))} than JPEG XL's ({r.bpd('jpegxl'):.3f}) and "
        f"{compared(icnn, r.bpd('webp'))} than WebP's ({r.bpd('webp'):.3f}). The coded size is "
        f"{icnn - nll:.3f} bpd above the model's own nll, of which the {ONE_TILE_OVERHEAD_BYTES} bytes of "
        f"header and kind that each one-tile stream carries are {overhead:.3f} bpd and its checksum, carried as "
        f"the state its coder starts from, {33 * dataset['images'] / dataset['dims']:.3f} (see [the format](format.md)); "
        "the rest is the coder's rounding. Decoding's time goes mostly into the exact integer networks, "
        "encoding's into choosing each thumbnail's adjustment on all its pixels "
        f"({row['encode_MBps']:.3f} and {row['decode_MBps']:.3f} MB/s in this run); the speeds of every codec "
        "vary from run to run on these shared virtual machines. How the model was trained, and the figures of "
        "the models before it: [models](models.md), [training](training.md)."
    )


def photos_text(r: Result) -> str:
    return photo_set_text(r, "the five scikit-image photographs")


def photo_val_text(r: Result) -> str:
    return photo_set_text(r, "the validation photographs") + (
        " The validation split is every 10th file of the photo training set (`--holdout-every 10`): photographs "
        "from the same four sources as the training images, never trained on."
    )


def photos_unseen_text(r: Result) -> str:
    return photo_set_text(r, "the photographs from unseen sources") + (
        " These 58 crops (`../shared/data/photos-unseen`: DND, CLIC 2020, USC-SIPI, Tecnick, Middlebury, libjxl's "
        "test data and others) come from none of the training set's sources: what users bring. Validation only, "
        "never trained on."
    )


def photo_set_text(r: Result, what: str) -> str:
    photo = r.bpd("icnn:photo")
    others = [("PNG", "png", False), ("JPEG XL", "jpegxl", True), ("WebP", "webp", True)]
    phrases = {True: [], False: []}  # smaller than it: True
    for name, codec, with_bpd in others:
        bpd = r.bpd(codec)
        phrases[photo < bpd].append(f"{compared(photo, bpd)} than {name}" + (f" ({bpd:.3f})" if with_bpd else ""))
    text = f"On {what} the `photo` model writes {photo:.3f} bpd: " + listed(phrases[True])
    return text + (f", but {listed(phrases[False])}." if phrases[False] else ".")


def listed(phrases: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join([", ".join(phrases[:-1]), phrases[-1]] if len(phrases) > 1 else phrases)


def photo_val_sources_text(r: Result) -> str:
    rows = r.table()
    gap_column = "icnn:photo vs jpegxl"
    closest = min(rows, key=lambda row: float(row[gap_column].rstrip("%")))
    farthest = max(rows, key=lambda row: float(row[gap_column].rstrip("%")))
    webp_gap = max(rows, key=lambda row: float(row["icnn:photo"]) - float(row["webp"]))
    behind_webp = all(float(row["icnn:photo"]) > float(row["webp"]) for row in rows)
    easiest = min(rows, key=lambda row: float(row["jpegxl"]))
    text = (
        "The same files of the validation split, by the data set each photograph comes from "
        "(`benchmarks/photo_val.py` writes this table from the per-image sizes of the run above). "
        f"The photo model is closest to JPEG XL on {closest['source']} ({closest[gap_column]}) and farthest on "
        f"{farthest['source']} ({farthest[gap_column]}); {easiest['source']} is the set JPEG XL codes in the "
        "fewest bits. McMaster's photographs come from uncompressed originals; Urban100's and Sun-Hays80's are "
        "web photographs halved with a 2×2 box filter; BSDS300's were released as JPEG. "
    )
    if behind_webp:
        text += (f"It is behind WebP on every set, by most on {webp_gap['source']} "
                 f"({webp_gap['icnn:photo']} against {webp_gap['webp']}).")
    else:
        ahead = [row["source"] for row in rows if float(row["icnn:photo"]) < float(row["webp"])]
        behind = [row["source"] for row in rows if row["source"] not in ahead]
        text += f"It is smaller than WebP on {', '.join(ahead)}" + (f", larger on {', '.join(behind)}." if behind else ".")
    return text


def grey_text(r: Result) -> str:
    if any(row["codec"] == "icnn:photo-grey" for row in r.data["datasets"][0]["results"]):  # the grey flow's runs
        icnn, what = r.bpd("icnn:photo-grey"), "The grey model `photo-grey` (a flow, since retired)"
    else:
        icnn, what = r.bpd("icnn:photo"), "The photo model `photo`"
    return (
        "Grey images are coded as runs of three horizontal neighbours, one position's three channels "
        f"([format](format.md)). {what} writes {icnn:.3f} bpd: "
        f"{compared(icnn, r.bpd('png'))} than PNG, {compared(icnn, r.bpd('webp'))} than WebP and "
        f"{compared(icnn, r.bpd('jpegxl'))} than JPEG XL. bpd here is bits per grey value."
    )


def graphics_text(r: Result) -> str:
    icnn = r.bpd("icnn")
    return (
        "Non-photographic images (screenshots, icons and logos, charts, diagrams, maps, comics, pixel art, "
        "scanned text; `../shared/data/graphics`, measured only) and five synthetic ones. icnn codes each tile "
        "with the model or one of its classic codings (flat, palette, filtered rows), whichever is shorter "
        f"([format](format.md)): {icnn:.3f} bpd, {compared(icnn, r.bpd('png'))} than PNG and "
        f"{compared(icnn, r.bpd('jpegxl'))} than JPEG XL. Each image against PNG: the next table."
    )


def graphics_images_text(r: Result) -> str:
    return "Each image's icnn file against PNG's (Pillow, `optimize=True`), from the same run as the table above."


def classic_trials_text(r: Result) -> str:
    rows = {row["set"]: row for row in r.table()}
    return (
        "The encoder codes each many-coloured tile through the model and classically and keeps the shorter; "
        "the full classic search (bzip2 on 6 streams, LZMA on the best two) cost about as much time as the "
        "network on photographs. A tile whose streams have no repeats for LZ77 to find (a zlib level 1 probe "
        "well above their order-0 entropy: the ratio is under the table) now gets bzip2 on the probe's best two "
        "streams and LZMA on the best of those (where it could beat the model). What that costs in the chosen "
        f"sizes: {rows['photos']['encoder vs previous search']} on the scikit-image photos, "
        f"{rows['graphics']['encoder vs previous search']} on the graphics' tiles."
    )


def tiling_text(r: Result) -> str:
    rows = r.table()
    default = next(row for row in rows if row["tile"] == "256")
    largest = rows[-1]
    fastest = min(rows, key=lambda row: float(row["encode s"]))
    return (
        "Tiles are coded independently, so the network loses context at their borders. A tile of "
        f"{largest['tile']} holds each of these photographs whole, so its row is the untiled baseline. The default "
        f"tile, 256, costs {default['cost vs whole'].lstrip('+')} more than whole-image coding"
        + (", is the fastest here" if fastest is default else "")
        + " and bounds the working memory (larger tiles cost time as well as memory here)."
    )


def large_text(r: Result) -> str:
    d = r.data
    exact = "it decodes exactly" if d["exact"] else "it does NOT decode exactly"
    return (
        f"A {d['width']}×{d['height']} photograph, a mosaic of the scikit-image photos, coded in tiles of "
        f"{d['tile']} with {d['jobs']} jobs ({exact}); the "
        "peaks are the peak RSS of the whole process. On a terminal the CLI shows a progress bar of tiles for "
        "such images."
    )


def fuzz_text(r: Result) -> str:
    d = r.data
    return (
        f"`benchmarks/fuzz.py` damages {d['source_streams']} source streams in {len(d['by_mutation'])} ways "
        f"(seed {d['seed']}) and decodes each result: every decode must be a clean `DecodeError` or the exact "
        "original pixels, never a crash, a hang or wrong pixels (a damaged stream can still decode exactly, "
        "when the damage falls where the decoder never reads). The test suite runs the same harness on fewer "
        "streams; `icnn_codec/tools/fuzz.py` defines the kinds of damage."
    )


def colour_gap_text(r: Result) -> str:
    return (
        "Where icnn loses to JPEG XL, by source, beside a yardstick with no modelling at all: the zeroth-order "
        "entropy of JPEG-LS's MED predictor's residuals, on RGB and after YCoCg-R "
        "(`benchmarks/colour_gap.py` reads the per-image sizes of the last `photo_val` and `photos_unseen` "
        "runs; [ablations](ablations.md))."
    )


NLL_IN_THE_STAGES_MODE = ("This run's nll bpd is the colour stage's mode's alone; later runs take the shorter colour "
                          "mode per image, as the codec does.")


@dataclass
class Section:
    name: str  # benchmarks/results/NAME.md
    title: str
    command: str
    text: Callable[[Result], str]
    plot: bool = False  # NAME.png, drawn by `icnn bench --plot`
    run_notes: dict[str, str] = field(default_factory=dict)  # run date -> what only that run needs said


SECTIONS = [
    Section("cifar10", "CIFAR-10 test1k", "python benchmarks/cifar10.py", cifar10_text, plot=True, run_notes={
        "2026-11-26": "This run was made in format 6 with the 12-bit model 97f3, before its conversion to the 8-bit "
                      "db68 (+0.41 % on test1k[:200], `python benchmarks/conversion.py`)."}),
    Section("photos", "Photographs: scikit-image", "python benchmarks/photos.py", photos_text, plot=True, run_notes={
        "2026-11-30": NLL_IN_THE_STAGES_MODE}),
    Section("photo_val", "Photographs: the photo model's validation split", "python benchmarks/photo_val.py",
            photo_val_text, plot=True, run_notes={
        "2026-11-30": NLL_IN_THE_STAGES_MODE}),
    Section("photo_val_sources", "The validation split by source", "python benchmarks/photo_val.py",
            photo_val_sources_text),
    Section("photos_unseen", "Photographs from unseen sources", "python benchmarks/photos_unseen.py",
            photos_unseen_text, plot=True, run_notes={
        "2026-11-30": NLL_IN_THE_STAGES_MODE}),
    Section("grey", "Grey photographs", "python benchmarks/grey.py", grey_text, plot=True, run_notes={
        "2026-11-26": "This run was made in format 6 with the 12-bit models 7df7 and 2a19, before their conversion "
                      "to the 8-bit 90ab and 90db."}),
    Section("graphics", "Graphics", "python benchmarks/graphics.py", graphics_text, plot=True, run_notes={
        "2026-11-30": NLL_IN_THE_STAGES_MODE}),
    Section("graphics_images", "Graphics, image by image", "python benchmarks/graphics.py", graphics_images_text),
    Section("classic_trials", "Classic trials", "python benchmarks/classic_trials.py", classic_trials_text),
    Section("tiling", "Tiling", "python benchmarks/tiling.py", tiling_text, run_notes={
        "2026-11-25": "This run was made in format 2 with the photo model of the time, c227 (the same networks "
                      "less the checkerboards): the table's `photo` is that model."}),
    Section("large", "A large image", "python benchmarks/large.py", large_text, run_notes={
        "2026-11-25": "This run was made with the photo model of the time, 62bb (the same networks less the top "
                      "context): the line's `photo` is that model."}),
    Section("fuzz", "Robustness: damaged streams", "python benchmarks/fuzz.py --streams 20000", fuzz_text,
            run_notes={
                "2026-11-26": "This run was made in format 6 while a training run shared the two cores, so its "
                              "decode times are slower than on an idle machine; its source streams included a "
                              "stored tile and a stream of format 2."}),
    Section("colour_gap", "Where the gap to JPEG XL is", "python benchmarks/colour_gap.py", colour_gap_text),
]

INTRO = """\
# Results

*Generated by `python benchmarks/results_doc.py` from the tables under `benchmarks/results/`, which
the benchmark scripts write; edit the scripts, not this page.*

Every figure is measured on this project's 2-core virtual machines, CPU only; each table names its
machine and date. *bpd* counts every byte of the files as written (one file per image, headers
included) per value (H×W×C); *nll bpd* is the model's own −log₂ p of the whole image, untiled: the
exact code length of the whole image under one tile predictor and scale offset, so the gap is what
the tiles, their headers and the coder cost (less what a predictor per tile saves). Tables of runs
made with the retired flow models (before December 2026) say *nll bpd* of a flow: its float path
plus its strips. Speeds are raw pixel MB per wall-clock second
inside the codec calls; memory is the peak RSS above the start. The README's summary table is copied
from the tables here.
"""


def verified_exact(results: list[Result]) -> str:
    """A sentence on the bench runs' decodes, from their JSON (never claimed, always counted)."""
    rows = [row for r in results if r.data and "datasets" in r.data
            for ds in r.data["datasets"] for row in ds["results"]]
    if rows and all(row["lossless"] and not row.get("mismatched_images") for row in rows):
        return "In every table written by `icnn bench` below, every decode was verified pixel-exact."
    return "**Some decodes in the tables below did not give back the original pixels: see the lossless column.**"


def render() -> str:
    known = {s.name for s in SECTIONS}
    unknown = sorted(p.stem for p in RESULTS.glob("*.md") if p.stem not in known)
    if unknown:
        raise SystemExit(f"results_doc: no section for benchmarks/results/{unknown[0]}.md: give it its text here")
    results = [load_result(s.name) for s in SECTIONS]
    parts = [INTRO, verified_exact(results) + "\n"]
    for section, result in zip(SECTIONS, results):
        parts.append(f"## {section.title}\n\n`{section.command}`\n")
        parts.append(section.text(result) + "\n")
        note = section.run_notes.get(result.date() or "")
        if note:
            parts.append(f"*{note}*\n")
        parts.append(result.markdown + "\n")
        if section.plot:
            parts.append(f"![{section.title}: bpd against decode speed](../benchmarks/results/{section.name}.png)\n")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/results.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            sys.exit("results_doc: docs/results.md is out of date: run python benchmarks/results_doc.py")
        return
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(SECTIONS)} sections)")


if __name__ == "__main__":
    main()
