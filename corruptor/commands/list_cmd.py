"""`corruptor list` (being written)."""


def register(sub):
    p = sub.add_parser("list", help="(not yet available)")
    p.set_defaults(func=lambda args: print("corruptor list: not yet available") or 1)
