"""Hostile input, generated: the server never answers 500 and keeps serving.

* every operation of the OpenAPI document, fuzzed by schemathesis (valid and
  invalid requests) through the Flask app (WSGI);
* prompt JSON from hypothesis: NaN/inf literals, huge and negative numbers,
  wrong shapes and types, label-count mismatches, huge arrays;
* the Label Studio protocol routes with malformed bodies;
* after every bad request, a good request still answers correctly.

The number of cases tried is printed (``pytest -s``) and recorded as a test
property (``--junitxml``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from backend.formats.images import encode_png
from sam_plugin.label_config import EXAMPLE_CONFIG
from tests.serving.tiny_model import picture, png_bytes

FUZZ_EXAMPLES = int(os.environ.get("SAM_FUZZ_EXAMPLES", "25"))
"""Cases per operation and generation mode (routes without inputs, and the costly
segment-everything route, get fewer); raise it locally for a deeper run."""


def _fuzz_settings(examples: int) -> settings:
    """Bounded and reproducible: the same cases every run, so CI time stays flat."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


ALLOWED_ERRORS = {400, 401, 404, 405, 413, 415}


class Guard:
    """Sends a known-good request after each hostile one and counts what happened."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.statuses: Counter[int] = Counter()
        self.cases = 0
        self.image_png = png_bytes(picture(seed=5))
        response = http.post("/v1/images", data=self.image_png)
        assert response.status_code == 200, response.get_data(as_text=True)
        self.image_id = response.get_json()["image_id"]
        self.width, self.height = response.get_json()["width"], response.get_json()["height"]
        self.expected = self._good_answer()

    def _good_answer(self) -> list[Any]:
        response = self.http.post(
            "/v1/predict", json={"image_id": self.image_id, "points": [[20, 15]], "labels": [1]}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return [m["segmentation"] for m in response.get_json()["objects"][0]["masks"]]

    def record(self, status: int, body: bytes | str, what: str) -> None:
        """Count one case; fail on a 5xx or a non-JSON error body.

        After each refused case (and every tenth case), a good request must
        still get the same answer as before.
        """
        self.cases += 1
        self.statuses[status] += 1
        assert status < 500, f"{what} answered {status}: {body[:500]!r}"
        if status >= 400:
            error = json.loads(body)
            assert isinstance(error.get("error"), str) and isinstance(error.get("detail"), str), body
        if status >= 400 or self.cases % 10 == 0:
            assert self._good_answer() == self.expected, f"a good request answered differently after {what}"

    def report(self, label: str, record_property: Any) -> None:
        summary = f"{label}: {self.cases} cases, statuses {dict(sorted(self.statuses.items()))}"
        print(summary)
        record_property(label, summary)


def _tame(body: Any, image_id: str, use_known_id: bool) -> Any:
    """Point most generated requests at a real image; keep segment-everything cheap on CI."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if use_known_id and "image_id" in body:
        body["image_id"] = image_id
    for key, limit in (("points_per_side", 4), ("crop_n_layers", 0), ("points_per_batch", 64)):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            body[key] = limit
    return body


def _fuzz_operation(op: Any, mode: GenerationMode, examples: int, guard: Guard) -> None:
    """Send ``examples`` generated requests for one operation through the guard."""

    @_fuzz_settings(examples)
    @given(drawn=st.tuples(op.as_strategy(generation_mode=mode), st.booleans()))
    def run(drawn: tuple[Any, bool]) -> None:
        case, use_known_id = drawn
        case.body = _tame(case.body, guard.image_id, use_known_id) if case.body is not None else None
        if isinstance(case.path_parameters, dict) and "image_id" in case.path_parameters and use_known_id:
            case.path_parameters["image_id"] = guard.image_id
        response = case.call()
        guard.record(
            response.status_code, response.content, f"{op.method.upper()} {op.path} {case.body!r:.300}"
        )

    run()


@pytest.mark.slow
def test_schemathesis_fuzzing_of_every_route_in_the_openapi_document(make_app, record_property):
    app = make_app()
    http = app.test_client()
    guard = Guard(http)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/images", "/v1/predict", "/v1/automask", "/v1/models"} <= paths

    for op in operations:
        has_inputs = op.method.upper() == "POST" or "{" in op.path
        examples = FUZZ_EXAMPLES if has_inputs and "automask" not in op.path else max(FUZZ_EXAMPLES // 3, 1)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            start, before = time.perf_counter(), guard.cases
            try:
                _fuzz_operation(op, mode, examples, guard)
            except Unsatisfiable:
                continue  # an operation without inputs has no invalid variant
            print(
                f"{op.method.upper()} {op.path} {mode.value}: {guard.cases - before} cases in "
                f"{time.perf_counter() - start:.1f} s"
            )
    assert guard.cases >= FUZZ_EXAMPLES * 6
    guard.report("schemathesis", record_property)


# ---------------------------------------------------------------- prompt JSON
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1e308, -1e308, 5e-324, 2**53 + 1, 80, 60, 79.999, 59.999]),
)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=8),
    NUMBERS,
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
POINT = st.one_of(st.lists(NUMBERS, min_size=2, max_size=2), st.lists(NUMBERS, max_size=4), JUNK)
POINTS = st.one_of(st.lists(POINT, max_size=6), JUNK, st.lists(st.lists(POINT, max_size=2), max_size=2))
LABELS = st.one_of(st.lists(st.one_of(st.sampled_from([0, 1, -1, 2, 255]), JUNK), max_size=6), JUNK)
BOX = st.one_of(st.lists(NUMBERS, min_size=4, max_size=4), st.lists(NUMBERS, max_size=6), JUNK)


@st.composite
def _plausible_prompt(draw: st.DrawFn) -> dict[str, Any]:
    """Prompts near the valid region of the 80x60 guard image: edges, single pixels, many points."""
    xs = st.one_of(st.floats(0.0, 80.0), st.sampled_from([0.0, 79.5, 80.0, -0.5, 80.5]))
    ys = st.one_of(st.floats(0.0, 60.0), st.sampled_from([0.0, 59.5, 60.0, -0.5, 60.5]))
    n = draw(st.integers(0, 12))
    prompt: dict[str, Any] = {}
    if n:
        prompt["points"] = [[draw(xs), draw(ys)] for _ in range(n)]
        prompt["labels"] = [
            draw(st.sampled_from([0, 1])) for _ in range(n + draw(st.sampled_from([0, 0, 0, 1])))
        ]
    if draw(st.booleans()):
        x1, y1, x2, y2 = draw(xs), draw(ys), draw(xs), draw(ys)
        if draw(st.booleans()):  # half of them well ordered, the rest possibly inverted
            x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        key = draw(st.sampled_from(["box", "boxes"]))
        prompt[key] = [x1, y1, x2, y2] if key == "box" else [[x1, y1, x2, y2]] * draw(st.integers(1, 20))
    prompt["multimask"] = draw(st.booleans())
    prompt["format"] = draw(st.sampled_from(["coco_rle", "png", "polygon"]))
    return prompt


HOSTILE_PROMPTS = st.fixed_dictionaries(
    {},
    optional={
        "points": POINTS,
        "labels": LABELS,
        "box": BOX,
        "boxes": st.one_of(st.lists(BOX, max_size=4), JUNK),
        "mask_input": st.one_of(st.text(max_size=70), JUNK),
        "multimask": st.one_of(st.booleans(), JUNK),
        "format": st.one_of(st.sampled_from(["coco_rle", "png", "polygon", "brush", "PNG", ""]), JUNK),
        "extra": JUNK,
    },
)
PROMPTS = st.one_of(_plausible_prompt(), HOSTILE_PROMPTS)


@pytest.mark.slow
def test_generated_prompts_get_a_4xx_or_a_well_formed_answer(make_app, record_property):
    http = make_app().test_client()
    guard = Guard(http)

    @_fuzz_settings(FUZZ_EXAMPLES * 4)
    @given(
        prompt=PROMPTS,
        image_choice=st.sampled_from(["known", "known", "known", "unknown", "missing", "junk"]),
    )
    def run(prompt: dict[str, Any], image_choice: str) -> None:
        body = dict(prompt)
        if image_choice == "known":
            body["image_id"] = guard.image_id
        elif image_choice == "unknown":
            body["image_id"] = "f" * 64
        elif image_choice == "junk":
            body["image_id"] = [1, 2]
        raw = json.dumps(body, allow_nan=True)  # NaN / Infinity literals on purpose
        response = http.post("/v1/predict", data=raw, content_type="application/json")
        guard.record(response.status_code, response.get_data(), f"predict {raw[:300]}")
        if response.status_code == 200:
            _check_answer(response.get_json(), guard.width, guard.height)

    run()
    guard.report("prompt-json", record_property)


def _check_answer(answer: dict[str, Any], width: int, height: int) -> None:
    """A 200 answer: objects with ranked candidates of the image's size."""
    assert answer["objects"], answer
    for obj in answer["objects"]:
        scores = [m["score"] for m in obj["masks"]]
        assert len(scores) in (1, 3) and scores == sorted(scores, reverse=True)
        assert all(math.isfinite(s) for s in scores)
        for mask in obj["masks"]:
            if isinstance(mask["segmentation"], dict) and "size" in mask["segmentation"]:
                assert mask["segmentation"]["size"] == [height, width]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"", 400),
        (b"{", 400),
        (b"[]", 400),
        (b"null", 400),
        (b'"image_id"', 400),
        (b"\xff\xfe\x00garbage", 400),
        (b'{"image_id": "IMG", "points": [[NaN, 1]], "labels": [1]}', 400),
        (b'{"image_id": "IMG", "points": [[Infinity, 1]], "labels": [1]}', 400),
        (b'{"image_id": "IMG", "points": [[1e999, 1]], "labels": [1]}', 400),
        (b'{"image_id": "IMG", "points": [[1' + b"1" * 5000 + b', 1]], "labels": [1]}', 400),
        (b'{"image_id": "IMG", "points": [[5, 5]], "labels": [true]}', 400),
        (b'{"image_id": "IMG", "points": [["5", "5"]], "labels": [1]}', 400),
        (b'{"image_id": "IMG", "points": [[5, 5]], "labels": [1.0]}', 400),
        (b'{"image_id": "IMG", "points": [[5, 5]], "labels": [1], "multimask": "no"}', 400),
        (b'{"image_id": "IMG", "points": [[1, 2]], "labels": [1, 0]}', 400),
        (b'{"image_id": "IMG", "points": [[-5, 2]], "labels": [1]}', 400),
        (b'{"image_id": "IMG", "points": [[1, 2, 3]], "labels": [1]}', 400),
        (b'{"image_id": "IMG", "box": [50, 40, 10, 5]}', 400),
        (b'{"image_id": "IMG", "box": [1, 2, 3]}', 400),
        (b'{"image_id": "IMG", "boxes": []}', 400),
        (b'{"image_id": "IMG", "box": [1, 1, 5, 5], "format": "bmp"}', 400),
        (b'{"image_id": "IMG", "box": [1, 1, 5, 5], "mask_input": "nope"}', 404),
        (b'{"image_id": "IMG"}', 400),
        (b'{"image_id": "IMG", "box": [1, 1, 5, 5], "surprise": 1}', 400),
        (b'{"image_id": "0000", "box": [1, 1, 5, 5]}', 404),
        (b'{"image_id": "IMG", "points": [[1, 1]], "labels": [1], "points2": ' + b"[1]" * 1 + b"}", 400),
        (
            b'{"image_id": "IMG", "points": '
            + json.dumps([[1, 1]] * 5000).encode()
            + b', "labels": '
            + json.dumps([1] * 5000).encode()
            + b"}",
            400,
        ),
        (b'{"image_id": "IMG", "points": ' + b"[" * 5000 + b"]" * 5000 + b', "labels": [1]}', 400),
    ],
    ids=lambda v: None if isinstance(v, int) else v[:40].decode("latin-1"),
)
def test_named_bad_predict_bodies_get_their_4xx_and_the_next_request_works(make_app, raw, status):
    http = make_app().test_client()
    guard = Guard(http)
    response = http.post(
        "/v1/predict", data=raw.replace(b"IMG", guard.image_id.encode()), content_type="application/json"
    )
    assert response.status_code == status, response.get_data(as_text=True)
    guard.record(response.status_code, response.get_data(), raw[:80].decode("latin-1"))


# ------------------------------------------------------ Label Studio routes
def _without_ids(answer: dict[str, Any]) -> list[Any]:
    """Label Studio results without their random region ids."""
    return [
        [{k: v for k, v in region.items() if k != "id"} for region in prediction["result"]]
        for prediction in answer["results"]
    ]


def _data_uri(pixels) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(encode_png(pixels)).decode()


LS_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
TASK = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.integers(), st.text(max_size=5), st.none()),
        "data": st.one_of(
            st.fixed_dictionaries(
                {
                    "image": st.one_of(
                        st.sampled_from(
                            [
                                "",
                                "/data/upload/1/x.png",
                                "file:///etc/passwd",
                                "data:image/png;base64,@@",
                                "data:text/plain,hello",
                                "gopher://x/",
                                "s3://bucket/key.png",
                                "/data/local-files/?d=../../etc/passwd",
                                "http://169.254.169.254/latest",
                            ]
                        ),
                        LS_JSON,
                    )
                }
            ),
            LS_JSON,
        ),
    },
)
RESULT = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["keypointlabels", "rectanglelabels", "brushlabels", "textarea", "choices", ""]
        ),
        "from_name": st.sampled_from(["click", "box", "mask", "nope"]),
        "to_name": st.just("image"),
        "original_width": st.one_of(st.integers(-5, 10**9), LS_JSON),
        "original_height": st.one_of(st.integers(-5, 10**9), LS_JSON),
        "value": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "x": NUMBERS,
                    "y": NUMBERS,
                    "width": NUMBERS,
                    "height": NUMBERS,
                    "keypointlabels": st.lists(st.text(max_size=10), max_size=2),
                    "rectanglelabels": st.lists(st.text(max_size=10), max_size=2),
                    "text": st.lists(st.text(max_size=10), max_size=2),
                    "rle": st.lists(st.integers(-1, 300), max_size=20),
                },
            ),
            LS_JSON,
        ),
        "is_positive": st.one_of(st.booleans(), LS_JSON),
    },
)
LS_BODIES = {
    "/ls/setup": st.fixed_dictionaries(
        {},
        optional={
            "project": LS_JSON,
            "schema": st.one_of(
                st.just(EXAMPLE_CONFIG),
                st.text(max_size=40),
                LS_JSON,
                st.just("<View><Image name='i' value='$i'/></View>"),
                st.just("<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><View>&e;</View>"),
            ),
            "hostname": LS_JSON,
            "access_token": LS_JSON,
            "extra_params": LS_JSON,
        },
    ),
    "/ls/predict": st.fixed_dictionaries(
        {},
        optional={
            "tasks": st.one_of(st.lists(TASK, max_size=3), LS_JSON),
            "project": LS_JSON,
            "label_config": st.one_of(st.just(EXAMPLE_CONFIG), st.text(max_size=30), LS_JSON),
            "params": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "context": st.one_of(
                            st.fixed_dictionaries({"result": st.lists(RESULT, max_size=3)}), LS_JSON
                        )
                    },
                ),
                LS_JSON,
            ),
        },
    ),
    "/ls/webhook": st.fixed_dictionaries(
        {},
        optional={
            "action": st.one_of(
                st.sampled_from(
                    ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED", "PROJECT_UPDATED", ""]
                ),
                LS_JSON,
            ),
            "annotation": st.one_of(
                st.fixed_dictionaries({}, optional={"id": LS_JSON, "result": st.lists(RESULT, max_size=2)}),
                LS_JSON,
            ),
            "task": st.one_of(TASK, LS_JSON),
            "project": st.one_of(
                st.fixed_dictionaries(
                    {}, optional={"id": LS_JSON, "label_config": st.one_of(st.just(EXAMPLE_CONFIG), LS_JSON)}
                ),
                LS_JSON,
            ),
        },
    ),
}


@pytest.mark.parametrize("route", sorted(LS_BODIES))
@pytest.mark.parametrize(
    "raw", [b"[" * 100_000, b'{"tasks": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", b"\xff\xfe", b"{", b"null"]
)
def test_label_studio_routes_refuse_unparseable_json_with_400(make_app, route, raw):
    http = make_app().test_client()
    response = http.post(route, data=raw, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"] == "invalid_input"
    assert http.get("/ls/health").status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("route", sorted(LS_BODIES))
def test_label_studio_routes_survive_malformed_bodies(make_app, route, record_property, tmp_path):
    from sam_plugin.settings import PluginSettings

    settings_ = PluginSettings(preannotate="automask", dataset_dir=tmp_path / "dataset")
    http = make_app(plugin_settings=settings_).test_client()
    guard = Guard(http)
    image = _data_uri(picture(seed=9))
    good = {
        "tasks": [{"id": 1, "data": {"image": image}}],
        "project": "1.1",
        "label_config": EXAMPLE_CONFIG,
        "params": {
            "context": {
                "result": [
                    {
                        "type": "keypointlabels",
                        "from_name": "click",
                        "to_name": "image",
                        "original_width": 80,
                        "original_height": 60,
                        "value": {"x": 25.0, "y": 25.0, "keypointlabels": ["Object"]},
                    }
                ]
            }
        },
    }
    expected = http.post("/ls/predict", json=good)
    assert expected.status_code == 200, expected.get_data(as_text=True)

    @_fuzz_settings(FUZZ_EXAMPLES * 2)
    @given(body=st.one_of(LS_BODIES[route], LS_JSON), encoding=st.sampled_from(["json", "form", "bytes"]))
    def run(body: Any, encoding: str) -> None:
        if encoding == "json":
            response = http.post(route, json=body)
        elif encoding == "form":
            response = http.post(
                route, data=json.dumps(body), content_type="application/x-www-form-urlencoded"
            )
        else:
            response = http.post(route, data=json.dumps(body).encode()[::-1], content_type="application/json")
        guard.record(response.status_code, response.get_data(), f"{route} {json.dumps(body)[:300]}")
        if guard.cases % 5 == 0:
            again = http.post("/ls/predict", json=good)
            assert again.status_code == 200 and _without_ids(again.get_json()) == _without_ids(
                expected.get_json()
            )

    run()
    guard.report(route, record_property)
