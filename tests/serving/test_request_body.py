"""Image uploads: raw bytes or a multipart ``file`` field; anything else gets a 400 saying how to send one."""

from __future__ import annotations

import io

import pytest

from backend.formats.images import compute_image_id
from tests.serving.tiny_model import picture, png_bytes

HOW = ("--data-binary", "-F file=@")


def _assert_says_how_to_upload(response) -> None:
    assert response.status_code == 400, response.json
    detail = response.json["detail"]
    assert all(hint in detail for hint in HOW), detail
    assert " object at 0x" not in detail and "<_io." not in detail, "no Python repr reaches a client"


def test_a_multipart_file_field_is_the_image(client, image_png):
    response = client.post(
        "/v1/images", data={"file": (io.BytesIO(image_png), "photo.png")}, content_type="multipart/form-data"
    )
    assert response.status_code == 200, response.json
    assert response.json == {"image_id": compute_image_id(picture()), "width": 80, "height": 60}


def test_a_multipart_form_without_a_file_field_says_how_to_send_one(client, image_png):
    response = client.post(
        "/v1/images", data={"image": (io.BytesIO(image_png), "photo.png")}, content_type="multipart/form-data"
    )
    _assert_says_how_to_upload(response)
    assert "no 'file' field" in response.json["detail"] and "image" in response.json["detail"]


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("text body", b"this is not an image at all", "application/octet-stream"),
        ("json body", b'{"image": "photo.jpg"}', "application/json"),
        ("empty body", b"", "application/octet-stream"),
        ("truncated png", png_bytes(picture())[:200], "image/png"),
    ],
)
def test_a_body_that_is_no_image_says_how_to_send_one(client, name, data, content_type):
    _assert_says_how_to_upload(client.post("/v1/images", data=data, content_type=content_type))


def test_a_multipart_file_that_is_no_image_says_how_to_send_one(client):
    response = client.post(
        "/v1/images",
        data={"file": (io.BytesIO(b"plain text"), "notes.txt")},
        content_type="multipart/form-data",
    )
    _assert_says_how_to_upload(response)
    assert "not an image file" in response.json["detail"]
