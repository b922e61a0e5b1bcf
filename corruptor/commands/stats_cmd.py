"""`corruptor stats` (being written)."""


def register(sub):
    p = sub.add_parser("stats", help="(not yet available)")
    p.set_defaults(func=lambda args: print("corruptor stats: not yet available") or 1)
