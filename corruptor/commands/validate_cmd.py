"""`corruptor validate` (being written)."""


def register(sub):
    p = sub.add_parser("validate", help="(not yet available)")
    p.set_defaults(func=lambda args: print("corruptor validate: not yet available") or 1)
