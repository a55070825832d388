"""plp_viz."""

__all__: list[str] = []
