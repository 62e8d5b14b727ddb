"""Exceptions raised on bad input. Each message names the file, key or rule at fault."""


class DiffadError(Exception):
    """Base class of every error diffad raises on purpose."""


class ConfigError(DiffadError, ValueError):
    """A config value is missing, unknown or out of range."""


class DatasetError(DiffadError):
    """A dataset on disk is missing, incomplete or inconsistent."""


class DownloadError(DiffadError):
    """A download failed, has the wrong checksum or an unsafe archive member."""


class WeightsError(DiffadError):
    """Pretrained weights are missing from the local cache."""


class TrainingError(DiffadError):
    """Training diverged (NaN loss) or cannot resume."""
