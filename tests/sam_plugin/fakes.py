"""Test doubles of the Label Studio plugin tests: a scripted model server, a canned HTTP session."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.errors import InvalidInput, NotFound, ServiceUnavailable
from backend.api.priority import Priority, parse_priority
from backend.client.base import SamClientBase
from backend.formats.images import compute_image_id, decode_image

LS_URL = "http://ls.test:8080"
CONCEPT_SCORES = (0.9, 0.7, 0.45, 0.2)
"""Scores of a concept's four instances on a concept model (the image's vertical quarters, left to right)."""


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """A random RGB PNG of the given size."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class ScriptedSamClient(SamClientBase):
    """A model server stand-in whose masks follow simple geometric rules.

    * a box prompt fills the box (one object per box);
    * clicks give a disk of radius 5 around each positive click, minus a
      disk of radius 3 around each negative click;
    * a text prompt fills the top-left quadrant.
    Candidates: the rule's mask three times with scores 0.9, 0.8, 0.7 (plus ``score_offset``).
    ``down = True`` makes every call fail like an unreachable server.

    Served models named in ``concept_models`` answer concept prompts like SAM 3
    (``/v1/models`` lists ``exemplars``): a text and/or exemplar boxes give
    every instance, one object each, best first, scoring above ``threshold``
    (default 0.5): the image's four vertical quarters (:data:`CONCEPT_SCORES`),
    each positive exemplar box itself (score 0.95), less the quarters holding
    a negative box's centre. Other models refuse exemplars and threshold with
    a 400, as the server does.
    """

    def __init__(self) -> None:
        self.sizes: dict[str, tuple[int, int]] = {}
        self.calls: list[dict[str, Any]] = []
        self.added: list[str] = []
        self.priorities: list[Priority] = []
        self.served = ["scripted"]
        self.automask_models: list[str | None] = []
        """Names of the served models, the default first."""
        self.concept_models: set[str] = set()
        self.models_calls = 0
        """Served models that answer concept prompts (SAM 3)."""
        self.down = False
        self.forget_images = False
        self.score_offset = 0.0  # added to every predicted IoU (0.2 gives scores above 1, as SAM can)
        self.top_mask_ignores_background = (
            False  # like a weak model: the top candidate ignores negative clicks
        )

    def _check(self, model: str | None = None) -> None:
        if self.down:
            raise ServiceUnavailable("cannot reach the model server at http://model.test: connection refused")
        if model is not None and model not in self.served:
            raise NotFound(f"unknown model {model!r}; this server serves {self.served}")

    def _maybe_forget(self, image_id: str) -> None:
        """Answer 404 once, like a restarted server that lost its image cache."""
        if self.forget_images:
            from backend.api.errors import SamServerError

            self.forget_images = False
            raise SamServerError(404, "not_found", f"unknown image_id {image_id}")

    def add_image(
        self, image: Any, *, model: str | None = None, priority: Priority | str = Priority.INTERACTIVE
    ) -> ImageInfo:
        self._check(model)
        pixels = decode_image(image)
        image_id = compute_image_id(pixels)
        self.sizes[image_id] = pixels.shape[:2]
        self.added.append(image_id)
        self.priorities.append(parse_priority(priority))
        return ImageInfo(image_id=image_id, width=pixels.shape[1], height=pixels.shape[0])

    def _mask(self, h: int, w: int, points: Any, labels: Any, box: Any, text: str | None) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w]
        mask = np.zeros((h, w), dtype=bool)
        if box is not None:
            x1, y1, x2, y2 = box
            mask |= (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
        for (x, y), label in zip(points or [], labels or [], strict=True):
            if label == 1:
                mask |= (xx - x) ** 2 + (yy - y) ** 2 <= 25
        for (x, y), label in zip(points or [], labels or [], strict=True):
            if label == 0:
                mask &= (xx - x) ** 2 + (yy - y) ** 2 > 9
        if text:
            mask[: h // 2, : w // 2] = True
        return mask

    def predict(
        self,
        image_id: str,
        *,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        boxes: Any = None,
        mask_input: str | None = None,
        text: str | None = None,
        exemplars: list[dict[str, Any]] | None = None,
        threshold: float | None = None,
        multimask: bool = True,
        model: str | None = None,
    ) -> list[ObjectMasks]:
        self._check(model)
        self.calls.append(
            {
                "model": model,
                "image_id": image_id,
                "points": points,
                "labels": labels,
                "box": box,
                "boxes": boxes,
                "text": text,
                "exemplars": exemplars,
                "threshold": threshold,
                "mask_input": mask_input,
                "multimask": multimask,
            }
        )
        self._maybe_forget(image_id)
        h, w = self.sizes[image_id]
        concepts = self.answers_concepts(model)
        if not concepts and (exemplars is not None or threshold is not None):
            raise InvalidInput(f"the model {model or self.served[0]!r} does not answer exemplars prompts")
        if concepts and (text is not None or exemplars is not None):
            if points is not None or box is not None or boxes is not None:
                raise InvalidInput(
                    "a concept prompt (text, exemplars) finds every instance: send points in another request"
                )
            return self._concept(h, w, text, exemplars or [], 0.5 if threshold is None else threshold)
        k = 3 if multimask else 1
        scores = np.array([0.9, 0.8, 0.7][:k], dtype=np.float32) + np.float32(self.score_offset)
        out = []
        for one_box in boxes if boxes is not None else [box]:
            mask = self._mask(h, w, points, labels, one_box, text)
            masks = [mask] * k
            if self.top_mask_ignores_background and labels:
                positives = [p for p, label in zip(points, labels, strict=True) if label == 1]
                masks[0] = self._mask(h, w, positives, [1] * len(positives), one_box, text)
            logits_id = f"logits-{len(self.calls)}-{len(out)}"
            out.append(
                ObjectMasks(
                    masks=np.stack(masks),
                    scores=scores,
                    stability_scores=scores.copy(),
                    logits_id=logits_id,
                )
            )
        return out

    def answers_concepts(self, model: str | None) -> bool:
        """Whether ``model`` (None: the default) is one of :attr:`concept_models`."""
        return (model or self.served[0]) in self.concept_models

    def _concept(
        self, h: int, w: int, text: str | None, exemplars: list[dict[str, Any]], threshold: float
    ) -> list[ObjectMasks]:
        """Every instance of a concept (see the class): one object each, best score first."""
        if not text and not any(e.get("positive", True) for e in exemplars):
            raise InvalidInput("give text, or at least one positive exemplar box, for a concept prompt")
        yy, xx = np.mgrid[0:h, 0:w]
        found: list[tuple[float, np.ndarray]] = []
        for exemplar in exemplars:
            if exemplar.get("positive", True):
                x1, y1, x2, y2 = exemplar["box"]
                found.append((0.95, (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)))
        negatives = [e["box"] for e in exemplars if not e.get("positive", True)]
        for index, score in enumerate(CONCEPT_SCORES):
            quarter = (xx >= index * w // 4) & (xx < (index + 1) * w // 4)
            if any(quarter[int((y1 + y2) / 2), int((x1 + x2) / 2)] for x1, y1, x2, y2 in negatives):
                continue
            found.append((score, quarter))
        label = text or "exemplar"
        out = []
        for score, mask in sorted(found, key=lambda item: -item[0]):
            if score <= threshold:
                continue
            rows, cols = np.nonzero(mask)
            box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float32)
            scores = np.array([score], dtype=np.float32)
            out.append(
                ObjectMasks(
                    masks=mask[None], scores=scores, stability_scores=scores.copy(), labels=[label], box=box
                )
            )
        return out

    def automask(self, image_id: str, *, model: str | None = None, **params: Any) -> list[dict[str, Any]]:
        from backend.formats.mask_codecs import to_coco_rle

        self._check(model)
        self.automask_models.append(model)
        self._maybe_forget(image_id)
        h, w = self.sizes[image_id]
        left = np.zeros((h, w), dtype=bool)
        left[:, : w // 2] = True
        return [
            {"segmentation": to_coco_rle(left), "predicted_iou": 0.95, "stability_score": 0.97},
            {"segmentation": to_coco_rle(~left), "predicted_iou": 0.85, "stability_score": 0.96},
        ]

    def models(self) -> list[dict[str, Any]]:
        self._check()
        self.models_calls += 1
        answer = []
        for name in self.served:
            prompts = ["points", "box", "boxes", "mask", "text"]
            concepts = name in self.concept_models
            family = "sam3" if concepts else "sam"
            answer.append(
                {
                    "name": name,
                    "ready": True,
                    "family": family,
                    "prompts": [*prompts, "exemplars"] if concepts else prompts,
                }
            )
        return answer

    def ready(self) -> bool:
        return not self.down


class FakeSession:
    """A ``requests.Session`` stand-in serving canned responses by URL."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.valid_refresh = "eyJh.eyJi.sig"
        self.refreshes = 0

    def add(
        self, url: str, body: bytes = b"", *, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.routes[url] = (status, headers or {}, body)

    def get(self, url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        import requests

        self.requests.append((url, dict(headers or {})))
        if url not in self.routes:
            raise requests.ConnectionError(f"no route to {url}")
        status, response_headers, body = self.routes[url]
        response = requests.Response()
        response.status_code = status
        response.headers.update(response_headers)
        response.url = url
        response.raw = io.BytesIO(body)
        return response

    def post(self, url: str, json: Any = None, **kwargs: Any) -> Any:
        """Only Label Studio's token refresh: ``{"refresh": pat}`` -> ``{"access": "access-<n>"}``."""
        import json as jsonlib

        import requests

        self.requests.append((url, {"body": jsonlib.dumps(json)}))
        response = requests.Response()
        response.url = url
        if url.endswith("/api/token/refresh") and json and json.get("refresh") == self.valid_refresh:
            self.refreshes += 1
            response.status_code = 200
            response._content = jsonlib.dumps({"access": f"access-{self.refreshes}"}).encode()
        else:
            response.status_code = 401
            response._content = b"{}"
        return response


def public_resolver(host: str) -> list[str]:
    """Every host resolves to a public address, except names containing 'loopback'."""
    return ["127.0.0.1"] if "loopback" in host else ["93.184.216.34"]
