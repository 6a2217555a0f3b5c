"""The one check of an uploaded image, for import and predict alike: format, pixels, integrity, then decoding."""
import io
import warnings

from PIL import Image, ImageFile

# Importing the plugins registers them in Image.OPEN, which image_header() reads; no other plugin's
# code ever sees the bytes (EPS would start Ghostscript, TIFF and others bring decoders of their own).
from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
FORMATS_TEXT = "PNG, JPEG, GIF, BMP or WebP"
EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
# Formats Pillow could open whose signature is worth naming in a refusal; recognised by their first
# bytes only, never by a plugin.
_SIGNATURES = (
    (b"%!PS", "EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"), (b"\x00\x00\x01\x00", "ICO"), (b"\x00\x00\x02\x00", "CUR"),
    (b"\x01\xda", "SGI"), (b"Image type", "IM"), (b"icns", "ICNS"), (b"%PDF", "PDF"), (b"8BPS", "PSD"),
    (b"\x0a\x05\x01", "PCX"), (b"\x0a\x00\x01", "PCX"), (b"\x0a\x02\x01", "PCX"), (b"\x0a\x03\x01", "PCX"),
    (b"P1", "PPM"), (b"P2", "PPM"), (b"P3", "PPM"), (b"P4", "PPM"), (b"P5", "PPM"),
    (b"P6", "PPM"), (b"P7", "PAM"), (b"PF", "PFM"), (b"Pf", "PFM"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"DDS ", "DDS"), (b"qoif", "QOI"), (b"<?xml", "SVG or XML"),
    (b"<svg", "SVG"), (b"SIMPLE", "FITS"), (b"\x59\xa6\x6a\x95", "Sun raster"), (b"gimp xcf", "XCF"),
)


class ImageRefused(ValueError):
    """The image is not taken; the message says why, in words for the person who sent it."""


def _first_line(exc: BaseException) -> str:
    message = exc.args[0] if exc.args else str(exc)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    text = str(message).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _other_format(data: bytes) -> str | None:
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def image_header(data: bytes, *, max_pixels: int) -> ImageFile.ImageFile:
    """Identify an allowed image and check its size from the header alone, without decoding pixels.

    Only the plugins of IMAGE_FORMATS are asked, so bytes of any other format never reach a decoder;
    the pixel count is checked against ``max_pixels`` and against Pillow's decompression-bomb limit.
    """
    # Image.open() raises its own decompression-bomb error above ~179 MP before we could say how
    # large the image is, and tries every plugin it knows: so the allowed plugins are asked directly.
    header = None
    for fmt in IMAGE_FORMATS:
        factory, accept = Image.OPEN[fmt]
        if (accept(data[:16]) if accept else True) is True:
            try:
                header = factory(io.BytesIO(data), "")
            except Exception as exc:  # plugins raise SyntaxError, struct.error, ... on broken headers
                raise ImageRefused(f"not a valid {fmt} image ({_first_line(exc)})") from exc
            break
    if header is None:
        other = _other_format(data)
        if other:
            raise ImageRefused(f"{other} images are not accepted; send {FORMATS_TEXT}")
        raise ImageRefused(f"not a {FORMATS_TEXT} image")
    width, height = header.size
    if width < 1 or height < 1:
        raise ImageRefused(f"image is {width}×{height} pixels, which holds nothing")
    limit = max_pixels if Image.MAX_IMAGE_PIXELS is None else min(max_pixels, Image.MAX_IMAGE_PIXELS)
    if width * height > limit:
        raise ImageRefused(f"image is {width}×{height} = {width * height:,} pixels, above the {limit:,}-pixel limit")
    return header


def image_open(data: bytes, *, max_pixels: int, draft: tuple[str, tuple[int, int]] | None = None) -> Image.Image:
    """Check an image (allowed format, pixel limit, integrity) before decoding it, then decode it; raise ImageRefused.

    ``draft`` (mode, size) lets a JPEG decode at a reduced scale when only a small picture is needed.
    The returned image is loaded: truncated pixel data has been found already.
    """
    header = image_header(data, max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():
            # Pillow's own guard as a second line: a frame larger than its header said is an error, not a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            header.verify()  # checksums and structure, before any pixel is decoded
            # verify() leaves the image unusable and misses truncated pixel data; load() catches that.
            image = Image.open(io.BytesIO(data), formats=[header.format])
            if draft is not None:
                image.draft(*draft)
            image.load()
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, ... on hostile input
        raise ImageRefused(f"image is truncated or corrupt ({_first_line(exc)})") from exc
    return image
