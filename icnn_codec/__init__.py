"""icnn-codec: lossless image compression by a learned model in exact integer arithmetic.

    import icnn_codec
    data = icnn_codec.compress(image)        # numpy uint8/uint16 (H, W) / (H, W, C) or a PIL image
    pixels = icnn_codec.decompress(data)     # bit-exact, or icnn_codec.DecodeError
    doc = icnn_codec.read_image(file_bytes)  # every frame and the metadata of an image file
    data = icnn_codec.compress_document(doc) # ... kept in the stream; decompress_document gives them back
"""
from . import pillow
from .codec import (compress, compress_document, compress_many, decompress, decompress_document, decompress_many,
                    decompress_tile, read_header, read_metadata, tile_kinds)
from .container import FORMAT_VERSION
from .errors import DecodeError, IcnnError, ModelError, OptionError, UnsupportedImageError
from .imagefile import Frame, ImageDocument, Metadata, read_image, write_image
from .zoo import DEFAULT_MODEL, Model, available_models, load_model

pillow.register()  # Image.open / im.save of .icnn files, once this package is imported

__version__ = "0.1.0"
__all__ = [
    "compress", "compress_many", "decompress", "decompress_many", "decompress_tile", "read_header", "tile_kinds",
    "compress_document", "decompress_document", "read_metadata", "read_image", "write_image",
    "ImageDocument", "Frame", "Metadata",
    "DecodeError", "IcnnError", "ModelError", "OptionError", "UnsupportedImageError",
    "load_model", "available_models", "Model", "DEFAULT_MODEL", "FORMAT_VERSION",
]
