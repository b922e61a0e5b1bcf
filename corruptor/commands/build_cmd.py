"""`corruptor build` (being written)."""


def register(sub):
    p = sub.add_parser("build", help="(not yet available)")
    p.set_defaults(func=lambda args: print("corruptor build: not yet available") or 1)
