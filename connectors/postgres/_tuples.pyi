from typing import Any

def row(
    payload: bytes, pos: int, names: tuple[str, ...], kinds: bytes, unavailable: object
) -> tuple[dict[str, Any], tuple[str, ...], int] | None: ...
