"""`xft predict`: run texts through a run's adapters from the shell, one JSON line per text.

The base model loads once and every text goes to its language's adapter (given, or detected with
`--language auto`), exactly as a server would route it; stdout carries only JSON Lines, so the output pipes
into `jq` or a file, while load messages go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, TextIO

from xft_core.adapters import AdapterError
from xft_core.cli.options import add_precision, chosen_precision
from xft_core.hooks import CommandSpec, hookimpl

# fields of a router prediction that stay out of the command's output
_HIDDEN = ("logits", "adapter_version", "adapter_hash", "language", "adapter")


@hookimpl
def xft_commands():
    yield CommandSpec(name="predict", register=register, description="predict with a run's adapters")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict with a run's adapters (each text routed to its language's adapter)",
        description="Predict with the adapters of a run (or an adapters folder, or one adapter package). Texts come from "
        "the arguments, --file (one text per line, or JSON Lines with \"text\" and optional \"language\") or stdin. "
        "Prints one JSON line per text: text, label, scores, language, adapter.",
    )
    p.add_argument("path", metavar="RUN_OR_ADAPTER", help="run folder, its adapters/ folder, or one adapter package")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify (else --file, else stdin)")
    p.add_argument("--file", type=Path, help="one text per line, or JSON Lines with 'text' (and 'language')")
    p.add_argument("--language", default="auto", help="language of every text without its own, or 'auto' to detect (default)")
    p.add_argument("--capacity", type=int, default=8, help="adapters kept loaded at once (default 8)")
    add_precision(p)
    p.add_argument("--fallback", metavar="NAME", help="adapter for languages without one (default: the bare base model)")
    p.add_argument("--fallback-map", metavar="FILE", type=Path,
                   help="a JSON file: language -> adapter, merge or ensemble (docs/transfer.md), or the sources.json of "
                        "`xft eval` (each language to its best source); --fallback, when given too, serves every other language")
    p.add_argument("--batch-size", type=int, default=32, help="rows per forward pass (default 32)")
    p.set_defaults(func=cmd_predict)


class InputError(AdapterError):
    """Texts given to `xft predict` that are not text (bytes that are not UTF-8, a lone surrogate)."""


def read_inputs(texts: list[str], file: Path | None, stdin: TextIO | None) -> list[dict[str, Any]]:
    """Rows {"text", "language"?} from arguments, a file or stdin (JSON Lines when the first line is an object).
    Each text must be Unicode: bytes that are not UTF-8 (also in an argument, where Python keeps them as lone
    surrogates) are an error naming the argument or the file and line."""
    if texts:
        for number, text in enumerate(texts, 1):
            check_text(text, f"text argument {number}", argument=True)
        return [{"text": t} for t in texts]
    if file is not None:
        if not file.is_file():
            raise FileNotFoundError(f"--file {file}: no such file")
        return parse_lines(decode_lines(file.read_bytes(), f"--file {file}"), f"--file {file}")
    if stdin is not None and not stdin.isatty():
        raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode("utf-8", "surrogateescape")
        return parse_lines(decode_lines(raw, "stdin"), "stdin")
    return []


def decode_lines(raw: bytes, source: str) -> list[str]:
    """The lines of UTF-8 bytes (a byte-order mark is dropped); bytes that are not UTF-8 name their line."""
    lines = raw.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    decoded = []
    for number, line in enumerate(lines, 1):
        try:
            decoded.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError(f"{source} line {number}: not UTF-8 (byte 0x{line[exc.start]:02x} at byte {exc.start + 1} "
                             "of the line); save the texts as UTF-8") from None
    return decoded


def check_text(text: str, where: str, *, argument: bool = False) -> None:
    """A lone surrogate is no character: from an argument it is a byte that is not UTF-8, from JSON a broken \\u
    escape."""
    for position, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            what = (f"byte 0x{ord(char) - 0xDC00:02x} that is not UTF-8" if argument and "\udc80" <= char <= "\udcff"
                    else f"a lone UTF-16 surrogate (\\u{ord(char):04x})")
            raise InputError(f"{where}: {what} at character {position + 1}, which is not text; give UTF-8 text")


def parse_lines(lines: Iterable[str], source: str) -> list[dict[str, Any]]:
    lines = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not lines or not lines[0][1].lstrip().startswith("{"):
        return [{"text": line.rstrip("\r")} for _, line in lines]
    rows = []
    for number, line in lines:
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{source} line {number}: not valid JSON ({getattr(exc, 'msg', exc)}); "
                             "JSON Lines input needs one object per line") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise InputError(f'{source} line {number}: needs a "text" field holding a string')
        if row.get("language") is not None and not isinstance(row["language"], str):
            raise InputError(f'{source} line {number}: "language" must be a language code (a string) or left out')
        for key, value in row.items():
            if isinstance(value, str):
                check_text(value, f"{source} line {number}, field {key!r}")
        rows.append(row)
    return rows


def cmd_predict(args: argparse.Namespace) -> int:
    from xft_core.inference.router import Router, find_packages

    find_packages(args.path)  # a wrong path fails before the model loads
    check_text(args.language, "--language", argument=True)
    rows = read_inputs(args.texts, args.file, sys.stdin)
    if not rows:
        print("error: no texts: give them as arguments, with --file, or on stdin", file=sys.stderr)
        return 2
    from xft_core.inference.fallback import with_default

    router = Router.from_run(args.path, capacity=args.capacity, fallback=with_default(args.fallback_map, args.fallback),
                             batch_size=args.batch_size,
                             precision=chosen_precision(args.precision, args.path))
    languages = [row.get("language") or args.language for row in rows]
    # whole rows go in, so JSON Lines can carry a second text (`text_pair`) for pair classification
    inputs = [{**router.row_from_text(row["text"]), **{k: v for k, v in row.items() if k not in ("text", "language")}}
              for row in rows]
    predictions = router.predict(inputs, languages)
    out = sys.stdout
    for row, prediction in zip(rows, predictions):
        record = {"text": row["text"], **{k: v for k, v in prediction.items() if k not in _HIDDEN},
                  "language": prediction.get("language"), "adapter": prediction.get("adapter")}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
    return 0
