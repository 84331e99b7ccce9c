"""Registry errors, importable without MLflow (the CLI maps them to exit codes)."""


class PromotionRefusedError(ValueError):
    """An alias move the promotion rules forbid."""


class VersionIntegrityError(RuntimeError):
    """A version's weights no longer hash to what was recorded at registration."""
