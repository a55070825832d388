"""plp_pipelines."""

__all__: list[str] = []
