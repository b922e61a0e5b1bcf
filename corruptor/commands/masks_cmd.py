"""`corruptor masks` (being written)."""


def register(sub):
    p = sub.add_parser("masks", help="(not yet available)")
    p.set_defaults(func=lambda args: print("corruptor masks: not yet available") or 1)
