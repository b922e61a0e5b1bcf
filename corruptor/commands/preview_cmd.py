"""`corruptor preview` (being written)."""


def register(sub):
    p = sub.add_parser("preview", help="(not yet available)")
    p.set_defaults(func=lambda args: print("corruptor preview: not yet available") or 1)
