"""`xft export`: one adapter package as a merged Hugging Face folder, a vLLM / LoRAX adapter, or TorchScript."""

from __future__ import annotations

import argparse
from typing import Any

from xft_core.hooks import CommandSpec, hookimpl


@hookimpl
def xft_commands():
    yield CommandSpec(name="export", register=register, description="export an adapter: merged model, vLLM/LoRAX, TorchScript")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="export an adapter: merged model, vLLM/LoRAX adapter, TorchScript",
        description="Export one adapter package of a run. merged: the base with the adapter folded into its weights, a "
        "Hugging Face folder any consumer loads (AutoModelFor... .from_pretrained(OUT)); vllm / lorax: a text-generation "
        "LoRA adapter in the layout their loaders read, with a README naming the serve command; torchscript: a "
        "classifier with its adapter merged, traced into OUT/model.pt and checked for equal logits. Every export holds "
        "xft-export.json (source package, manifest fingerprint, labels). See docs/export.md.",
    )
    p.add_argument("source", metavar="RUN_OR_ADAPTER", help="run folder, its adapters/ folder, or one adapter package")
    p.add_argument("--to", required=True, choices=["merged", "vllm", "lorax", "torchscript"], help="what to write")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (new, empty, or an earlier export)")
    p.add_argument("--adapter", metavar="NAME", help="the package to export when the run has several (e.g. a language)")
    p.add_argument("--language", metavar="LANG",
                   help="madx: the language adapter merged under the task adapter (default: the source language's)")
    p.add_argument("--max-length", type=int, metavar="N",
                   help="torchscript: longest input checked (default: the run's training.max_length, else 256)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from xft_core.export import export
    from xft_core.util.console import console as make_console
    from xft_core.util.lock import hold_folder

    with hold_folder(args.out, "xft export"):
        exported = export(args.source, args.out, to=args.to, adapter=args.adapter, language=args.language,
                          max_length=args.max_length)
    info = exported.info
    console = make_console()
    console.print(f"exported {info['source_package']} --to {exported.to}: {exported.path}", highlight=False, soft_wrap=True)
    if exported.to == "merged":
        console.print(f"load: {info['auto_class']}.from_pretrained('{exported.path}')", highlight=False, soft_wrap=True)
        if info.get("dequantized"):
            console.print(f"[yellow]note:[/] {info['dequantized']}", highlight=False, soft_wrap=True)
    elif exported.to == "torchscript":
        checked = info["checked"]
        console.print(f"checked: {len(checked['batches'])} batches, max |logit difference| {checked['max_abs_diff']:.2g}, "
                      f"padding {info['padding']}", highlight=False, soft_wrap=True)
    else:
        console.print(f"serve: see {exported.path / 'README.md'}", highlight=False, soft_wrap=True)
    return 0
