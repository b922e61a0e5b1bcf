"""`corruptor rebuild` (being written)."""


def register(sub):
    p = sub.add_parser("rebuild", help="(not yet available)")
    p.set_defaults(func=lambda args: print("corruptor rebuild: not yet available") or 1)
