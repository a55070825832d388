"""plp_models."""

__all__: list[str] = []
