"""Error messages as clients see them: no object reprs, no server paths, URLs left alone."""

from __future__ import annotations

import os
import sys

import pytest

from backend.public_detail import public_detail

HOME = os.path.expanduser("~")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "cannot identify image file <_io.BytesIO object at 0x7f12ab34>",
            "cannot identify image file an object",
        ),
        ("<module 'torch' from '/x/torch/__init__.py'> failed", "an object failed"),
        (f"no weights file at {HOME}/.cache/sam-server/sam_vit_b.pth", "no weights file at sam_vit_b.pth"),
        (f"cannot read checkpoint '{sys.prefix}/lib/x.pt'", "cannot read checkpoint 'x.pt'"),
        ("see /etc/passwd and file:///etc/shadow", "see passwd and shadow"),
    ],
)
def test_reprs_and_local_paths_are_removed(message, expected):
    assert public_detail(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        "upload the image with POST /v1/images (add_image) first",
        "refusing to fetch 'http://example.com/home/x.png'",
        "image reference '/data/local-files/?d=../../etc/passwd' contains '..'",
        "the request body is larger than the server's limit of 100 MiB",
        "/etcetera/x is not a server path",
    ],
)
def test_url_paths_and_plain_text_stay_as_they_are(message):
    assert public_detail(message) == message


def test_kept_names_stay_whole_while_other_paths_around_them_are_cut():
    served = f"{HOME}/models/tuned sam2.pt"  # a model served from a file: its name is its path
    message = f"unknown model 'x'; this server serves ['demo', '{served}'] (weights in {HOME}/.cache/w.pt)"
    assert public_detail(message, keep=[served, "demo"]) == (
        f"unknown model 'x'; this server serves ['demo', '{served}'] (weights in w.pt)"
    )
    assert public_detail(message) != message, "without keep the path is cut"


@pytest.mark.parametrize(
    ("message", "keep", "expected"),
    [
        (f"cannot write {HOME}/projects/demo/out.json", ["demo"], "cannot write out.json"),
        (f"{HOME}/bob/sam3/weights/model.safetensors failed", ["sam3"], "model.safetensors failed"),
        (f"see {HOME}/x/y.pt", ["a", "/"], "see y.pt"),
        (f"see {HOME}/models/x.pt.bak", [f"{HOME}/models/x.pt"], "see x.pt.bak"),
    ],
)
def test_a_kept_name_inside_a_longer_path_keeps_nothing_of_that_path(message, keep, expected):
    assert public_detail(message, keep=keep) == expected
