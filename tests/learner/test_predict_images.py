"""Image predict takes images as import does: the same formats, pixel limit and integrity check, 400 otherwise."""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from learner.ml.featurize import ImageFeaturizer
from learner.ml.training import fit
from learner.services import models as model_services
from learner.services.models import model_version_create, model_version_promote

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore:IM image format is deprecated")]
DATA = Path(__file__).parent.parent / "data"


@pytest.fixture
def predict_url(client, image_project, manager) -> str:
    """An image project with a live model, and its predict URL for a logged-in manager."""
    model_services._cache.clear()
    labels = [label.pk for label in image_project.labels.order_by("order")[:2]]
    X = np.random.default_rng(0).random(size=(60, ImageFeaturizer.n_features))
    version = model_version_create(
        project=image_project, pipeline=fit("image", X, np.asarray(labels)[(X[:, 0] > 0.5).astype(int)]),
        classes=labels, feature_space=ImageFeaturizer.space, algorithm="lr", hyperparameters={},
        label_snapshot_hash="s", labels_used=60,
    )
    model_version_promote(version, reason="first", trigger="manual")
    client.force_login(manager)
    return reverse("api-predict", args=[image_project.pk])


def encoded(fmt: str, size: tuple[int, int] = (32, 32), mode: str = "L", **options) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=120).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width × height, with one tiny compressed row of data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def post(client, url: str, *files: tuple[str, bytes]):
    return client.post(url, {"image": [SimpleUploadedFile(name, data) for name, data in files]})


def test_allowed_formats_are_predicted(client, predict_url):
    jpeg = encoded("JPEG", (640, 480), "RGB")
    response = post(client, predict_url, ("a.png", encoded("PNG")), ("b.jpg", jpeg), ("c.gif", encoded("GIF")),
                    ("d.bmp", encoded("BMP")), ("e.webp", encoded("WEBP", mode="RGB")))
    assert response.status_code == 200, response.json()
    assert len(response.json()["predictions"]) == 5


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        # 13,000 × 13,000 in a 164 kB file: refused from its header, before 169 MP are decoded.
        ("flat.png", encoded("PNG", (13_000, 13_000)), "image 1: image is 13000×13000 = 169,000,000 pixels, above the"
         " 50,000,000-pixel limit."),
        ("huge.png", (DATA / "huge_dimensions.png").read_bytes(), "image 1: image is 20000×20000 = 400,000,000 pixels"),
        ("liar.png", png_header_only(30_000, 30_000), "image 1: image is 30000×30000 = 900,000,000 pixels"),
        ("a.tif", encoded("TIFF"), "image 1: TIFF images are not accepted; send PNG, JPEG, GIF, BMP or WebP."),
        ("a.pcx", encoded("PCX"), "image 1: PCX images are not accepted"),
        ("a.sgi", encoded("SGI"), "image 1: SGI images are not accepted"),
        ("a.ico", encoded("ICO"), "image 1: ICO images are not accepted"),
        ("a.im", encoded("IM"), "image 1: IM images are not accepted"),
        ("a.ppm", encoded("PPM"), "image 1: PPM images are not accepted"),
        ("a.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n0 setgray 0 0 32 32 rectfill\nshowpage\n",
         "image 1: EPS images are not accepted"),
        ("text.png", b"not an image at all", "image 1: not a PNG, JPEG, GIF, BMP or WebP image."),
        ("corrupt.png", (DATA / "corrupt.png").read_bytes(), "image 1: not a valid PNG image"),
        ("truncated.png", (DATA / "truncated.png").read_bytes(), "image 1: image is truncated or corrupt"),
        ("cut.jpg", encoded("JPEG", (256, 256), "RGB")[:-200], "image 1: image is truncated or corrupt"),
    ],
)
def test_a_bad_image_is_refused_with_a_400_naming_the_problem(client, predict_url, monkeypatch, name, data, message):
    from PIL import EpsImagePlugin

    def ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript must never run on an uploaded image")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    response = post(client, predict_url, (name, data))

    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(message)


def test_the_bad_image_of_a_batch_is_named_and_nothing_is_logged(client, predict_url):
    from learner.models import PredictionLog

    response = post(client, predict_url, ("a.png", encoded("PNG")), ("b.tif", encoded("TIFF")))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("image 2: TIFF images are not accepted")
    assert PredictionLog.objects.count() == 0


def test_the_images_of_one_request_share_a_pixel_budget(client, predict_url, settings):
    settings.LABELHUB_PREDICT_MAX_PIXELS = 3 * 100 * 100
    small = encoded("PNG", (100, 100))

    assert post(client, predict_url, *[(f"{i}.png", small) for i in range(3)]).status_code == 200
    response = post(client, predict_url, *[(f"{i}.png", small) for i in range(4)])
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "The images of this request hold more than 30,000 pixels together; send fewer or smaller images."
    )


def test_the_pixel_limit_is_the_import_setting(client, predict_url, settings):
    settings.LABELHUB_IMAGE_MAX_PIXELS = 50 * 50

    assert post(client, predict_url, ("a.png", encoded("PNG", (50, 50)))).status_code == 200
    response = post(client, predict_url, ("a.png", encoded("PNG", (51, 50))))
    assert response.status_code == 400
    assert response.json()["detail"] == "image 1: image is 51×50 = 2,550 pixels, above the 2,500-pixel limit."
