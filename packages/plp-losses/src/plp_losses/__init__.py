"""plp_losses."""

__all__: list[str] = []
