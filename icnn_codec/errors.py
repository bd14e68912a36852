"""The codec's exceptions: each says what is wrong in one line, fit for a CLI message."""


class IcnnError(Exception):
    """Base class of icnn-codec's own errors."""


class DecodeError(IcnnError, ValueError):
    """The data is not a valid icnn stream (or not one this installation can decode)."""


class ModelError(IcnnError, ValueError):
    """A model cannot be found or its file is not valid."""


class UnsupportedImageError(IcnnError, ValueError):
    """The image's mode, dtype or shape is not one the codec handles."""


class OptionError(IcnnError, ValueError):
    """A setting (a tile side, say) that the codec or the chosen model cannot use."""
