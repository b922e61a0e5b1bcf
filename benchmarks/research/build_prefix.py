"""Prefix caches: python build_prefix.py [--work DIR] [--model DIR] [--kind real] [--first 10] [--via K] train val test

Writes WORK/prefix_{which}_k{first}.safetensors. With --via K the prefix at block K is built (or read) first
and carried through the frozen blocks K..first-1 (the pre-port k8to10.py). The reported study used
`--first 8 train val`, then `--first 10 --via 8 train val`, then `--first 10 test`."""
import argparse

import lab
import lab2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("which", nargs="+", choices=("train", "val", "test"))
    ap.add_argument("--work")
    ap.add_argument("--model")
    ap.add_argument("--kind", default="real", choices=("real", "tiny"))
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--first", type=int, default=lab2.FIRST)
    ap.add_argument("--via", type=int, default=None)
    a = ap.parse_args()
    lab.configure({"work": a.work, "model": a.model})
    im, fl = lab.load_data(a.size)
    model = lab.load_encoder(a.kind)
    for which in a.which:
        if a.via is None:
            lab2.build_prefix(model, im, fl, which, a.first)
        else:
            lab2.advance_prefix(model, im, fl, which, a.via, a.first)


if __name__ == "__main__":
    main()
