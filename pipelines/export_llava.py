"""Run a LLaVA / LLaVA-NeXT model with trained MAA adapters, or export them in the release's format.

    python -m pipelines.export_llava --model LLAVA_DIR --adapters RUN/best \\
        [--image photo.jpg --prompt "What is written on the sign?" [--compare]] \\
        [--release-checkpoint maa.pth]

--image: answers the prompt with the adapters on (and off with --compare), through the
model folder's own processor and chat template. --release-checkpoint: writes the adapters
as the public release does (a state dict of `...layers.{i}.maa_adapter.*` tensors).

In a benchmark harness (VLMEvalKit, lmms-eval) load the model as the harness does, then
call `maa_train.students.export.attach_adapters(model, "RUN/best")` once; generation then runs
through the adapters.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from maa_train.students.checkpoint import CheckpointMismatchError
from maa_train.students.export import adapters_disabled, load_llava_with_adapters, save_release_checkpoint

DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def answer(model, processor, image, prompt: str, max_new_tokens: int) -> str:
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = processor(images=image, text=text, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.export_llava", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="local LLaVA or LLaVA-NeXT folder (save_pretrained layout)")
    p.add_argument("--adapters", required=True, help="adapter checkpoint folder written by maa-train (e.g. RUN/best)")
    p.add_argument("--image", help="an image to ask about")
    p.add_argument("--prompt", default="Describe the image.")
    p.add_argument("--compare", action="store_true", help="also answer without the adapters")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="auto")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--release-checkpoint", help="write the adapters in the release's maa.pth format here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model = load_llava_with_adapters(args.model, args.adapters, dtype=DTYPES[args.dtype], device=args.device)
    except (CheckpointMismatchError, FileNotFoundError, ValueError) as exc:
        print(f"export_llava: error: {exc}", file=sys.stderr)
        return 2
    print(f"attached {len(model.maa_attachment.handles)} adapters from {args.adapters} to {type(model).__name__}")
    if args.release_checkpoint:
        print(f"wrote {save_release_checkpoint(model, args.release_checkpoint)}")
    if args.image:
        from PIL import Image
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(args.model)
        image = Image.open(Path(args.image)).convert("RGB")
        print(f"with adapters: {answer(model, processor, image, args.prompt, args.max_new_tokens)}")
        if args.compare:
            with adapters_disabled(model):
                print(f"without:       {answer(model, processor, image, args.prompt, args.max_new_tokens)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
