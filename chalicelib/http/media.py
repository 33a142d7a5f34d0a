"""Reading the media ranges of an ``Accept`` header, the one way every
protocol weighs them."""


def accepted(accept):
    """``[(media, q)]`` of an ``Accept`` header in the client's order: the
    media range lower-cased, its ``q`` weight (1 when absent, 0 when
    unreadable)."""
    ranges = []
    for item in (accept or "").split(","):
        media, *params = [p.strip() for p in item.split(";")]
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((media.lower(), q))
    return ranges
