"""icnn-codec: lossless image compression with integer discrete flows.

    import icnn_codec
    data = icnn_codec.compress(image)        # numpy uint8 (H, W) / (H, W, C) or a PIL image
    pixels = icnn_codec.decompress(data)     # bit-exact, or icnn_codec.DecodeError
"""
from .codec import compress, compress_many, decompress, decompress_many, decompress_tile, read_header, tile_kinds
from .container import FORMAT_VERSION
from .errors import DecodeError, IcnnError, ModelError, OptionError, UnsupportedImageError
from .zoo import DEFAULT_MODEL, Model, available_models, load_model

__version__ = "0.1.0"
__all__ = [
    "compress", "compress_many", "decompress", "decompress_many", "decompress_tile", "read_header", "tile_kinds",
    "DecodeError", "IcnnError", "ModelError", "OptionError", "UnsupportedImageError",
    "load_model", "available_models", "Model", "DEFAULT_MODEL", "FORMAT_VERSION",
]
