"""The Label Studio model class, with label-studio-ml 2.x's method signatures.

``label-studio-ml`` 1.0.9 (the PyPI release) pins Flask 1.1.2 and imports
``rq`` without declaring it, and 2.x is not on PyPI, so this class does not
subclass ``LabelStudioMLBase``; it keeps its shape instead, so it reads like
every other Label Studio backend:

* ``SamLabelStudioModel(project_id, label_config)`` is built per request,
* ``setup()`` checks the config and learns the model version,
* ``predict(tasks, context=None, **kwargs)`` returns one prediction per task,
* ``fit(event, data, **kwargs)`` stores accepted annotations.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from backend.api.answers import ImageInfo
from backend.api.errors import InvalidInput, SamError, ServiceUnavailable
from backend.api.priority import Priority
from backend.formats.images import compute_image_id, decode_image
from backend.public_detail import public_detail
from sam_plugin.brush_limits import check_brush_sizes
from sam_plugin.concepts import segment_concept
from sam_plugin.controls.prompt import InteractivePrompt, first_label
from sam_plugin.controls.registry import BRUSH_LABELS, is_prompt_result
from sam_plugin.dataset_writer import AcceptedMask, DatasetWriter, annotation_key
from sam_plugin.interactive import collect_prompt
from sam_plugin.interactive_sessions import SessionKey
from sam_plugin.label_config import SamLabelConfig, parse_label_config, require_prompt_controls
from sam_plugin.preannotate import automask_regions, concept_regions, text_regions
from sam_plugin.refinement import InteractiveAnswer, answer_interactive
from sam_plugin.regions import mask_regions, prediction
from sam_plugin.runtime import PluginRuntime, as_model_server_error, require_loaded_or_loading

logger = logging.getLogger(__name__)
T = TypeVar("T")

TASK_IMAGE_ERRORS = frozenset({"image_fetch_failed", "image_fetch_timeout"})
"""Errors of status 500 and above that are still one task's: its image host failed or was too
slow (4xx errors while getting a task's image are that task's too, but for an unknown model)."""
NOT_THE_TASKS = frozenset({"label_studio_refused"})
"""Errors while getting a task's image that are every task's: Label Studio refused the plugin's key."""
BATCH_SECONDS = 80.0
"""Batch pre-annotation starts no task after this many seconds of a request: Label Studio 1.23
waits 100 s for the answer (``ML_TIMEOUT_PREDICT``) and stores nothing when it gives up."""
BATCH_DEADLINE_MESSAGE = (
    "not started: Label Studio waits 100 s for a batch, and this one had used 80 s; "
    "Retrieve Predictions again for the tasks without predictions (or tick fewer at once)"
)

FIT_EVENTS = (
    "ANNOTATION_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_DELETED",
    "ANNOTATIONS_DELETED",
    "TASKS_DELETED",
)
"""Webhook events ``fit()`` handles; any other event is acknowledged and ignored. Label Studio
1.23 sends ``ANNOTATIONS_CREATED`` (lists of annotations and their tasks) from "Create
Annotations From Predictions", ``ANNOTATIONS_DELETED`` (annotation ids only) for every
deletion and ``TASKS_DELETED`` (task ids) when tasks go with their annotations;
``ANNOTATION_DELETED`` is the older single form."""


def annotator(task: dict[str, Any]) -> str:
    """The annotator of an interactive request, from the task's drafts (``""`` when Label Studio names none)."""
    drafts = task.get("drafts")
    if isinstance(drafts, list):
        for draft in drafts:
            if isinstance(draft, dict) and draft.get("user") is not None:
                return str(draft["user"])
    return ""


def _check_brushes_match_image(brushes: list[dict[str, Any]], pixels: np.ndarray) -> None:
    """Refuse brush regions drawn on an image of another size than the task image (``HxWx3`` ``pixels``).

    Raises:
        InvalidInput: A region's ``original_width/height`` differ from the image's, with the likely cause.
    """
    for item in brushes:
        if (item["original_height"], item["original_width"]) != pixels.shape[:2]:
            raise InvalidInput(
                f"brush mask of {item['original_width']}x{item['original_height']} pixels does not match the "
                f"image ({pixels.shape[1]}x{pixels.shape[0]}); was the image replaced or rotated?"
            )


class SamLabelStudioModel:
    """Segment Anything behind Label Studio's ML backend protocol.

    Args:
        project_id: Label Studio project id (the part before the dot of
            Label Studio's ``"<id>.<created_at>"`` project uid).
        label_config: The project's labeling config XML.
        runtime: The long-lived client, fetcher and caches.
    """

    def __init__(self, project_id: str | None, label_config: str | None, *, runtime: PluginRuntime) -> None:
        self.project_id = project_id
        self.label_config = label_config
        self.runtime = runtime
        self.model = runtime.model_for(project_id)
        """The model server's model serving this project (None: the server's default)."""
        self.client = runtime.client_for(project_id)
        self._parsed: SamLabelConfig | None = None

    @property
    def config(self) -> SamLabelConfig:
        """The parsed labeling config (raises :class:`InvalidInput` when unusable)."""
        if self._parsed is None:
            self._parsed = parse_label_config(self.label_config, output=self.runtime.settings.output)
        return self._parsed

    @property
    def model_version(self) -> str:
        """``sam-<model name>`` as reported by the model server."""
        return self.runtime.model_version(self.model)

    # ------------------------------------------------------------------ setup
    def setup(self, *, timeout_s: float | None = None) -> str:
        """Check the labeling config and return the model version.

        Args:
            timeout_s: Budget for asking the model server its model name.

        Raises:
            InvalidInput: The config lacks the tags the plugin needs.
            ServiceUnavailable: The model server is down or slow, or failed to load the project's model.
        """
        config = self.config
        if self.runtime.settings.preannotate == "off":
            require_prompt_controls(config)
        if self.runtime.settings.preannotate == "concepts" and not config.output.labels:
            raise InvalidInput(
                f'SAM_PREANNOTATE=concepts uses the labels of <{config.output.tag} name="{config.output.name}"> '
                'as concepts, and it has none: add <Label value="..."/> tags to it'
            )
        version = self.runtime.model_version(self.model, timeout_s=timeout_s)
        require_loaded_or_loading(self.runtime.model_entry(self.model, timeout_s=timeout_s))
        return version

    # ---------------------------------------------------------------- predict
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """One prediction per task: interactive when ``context`` has regions, else batch pre-annotation.

        Args:
            tasks: Label Studio tasks (``{"id", "data": {...}}``).
            context: Interactive context, ``{"result": [regions the annotator drew]}``.
            **kwargs: Other request params (``login``, ``password``), unused.

        Returns:
            ``[{"result": [regions], "score": float, "model_version": str}, ...]``,
            the same length as ``tasks``.
        """
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise InvalidInput("'tasks' must be a list of Label Studio task objects")
        try:
            if context and context.get("result"):
                if not tasks:
                    raise InvalidInput("an interactive request needs the task it refers to")
                return [self._predict_interactive(tasks[0], context["result"])]
            if tasks and self.runtime.settings.preannotate == "concepts":
                self._require_concepts()  # the project's problem, not one task's: the request fails
            deadline = time.monotonic() + BATCH_SECONDS
            return [
                self._preannotate_unless_its_image_fails(task)
                if time.monotonic() < deadline
                else _task_error(task, "batch_deadline", BATCH_DEADLINE_MESSAGE, self.model_version)
                for task in tasks
            ]
        except Exception as exc:
            mapped = as_model_server_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _task_image(self, task: dict[str, Any], priority: Priority) -> tuple[bytes, ImageInfo]:
        """The task image's bytes and the model server's info on it (``priority``: the lane of
        its encoding, ``BULK`` for batch pre-annotation, so it waits behind the annotators' clicks).

        Raises:
            InvalidInput: ``no_task_image``, or a reference that cannot be fetched.
            SamError: The download, the decoding or the encoding failed.
        """
        key = self.config.image_key
        reference = (task.get("data") or {}).get(key)
        if not isinstance(reference, str):
            raise InvalidInput(
                f'task {task.get("id")} has no image URL in data.{key} (the <Image value="${key}">)',
                code="no_task_image",
            )
        data = self.runtime.image_bytes(reference, task_id=task.get("id"), project_id=self.project_id)
        return data, self.runtime.add_image(data, model=self.model, priority=priority)

    def _on_task_image(
        self,
        task: dict[str, Any],
        action: Callable[[ImageInfo], T],
        *,
        priority: Priority = Priority.INTERACTIVE,
        image: tuple[bytes, ImageInfo] | None = None,
    ) -> T:
        """Run ``action`` with the model server's info on the task image (``image``: already had).

        When the server answers 404 for the image id (it restarted and lost
        its cache) the image is registered again and ``action`` retried once.
        """
        data, info = image or self._task_image(task, priority)
        try:
            return action(info)
        except SamError as exc:
            if exc.status != 404 or "unknown model" in exc.detail:
                raise
            return action(self.runtime.add_image(data, model=self.model, refresh=True, priority=priority))

    def _predict_interactive(self, task: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
        config = self.config
        require_prompt_controls(config)
        key = (str(self.project_id or ""), str(task.get("id")), annotator(task))
        concepts = self.runtime.answers_concepts(self.model) is True

        attempts: list[int] = []

        def run(info: ImageInfo) -> InteractiveAnswer:
            prompt = collect_prompt(
                results,
                config,
                width=info.width,
                height=info.height,
                negative_labels=self.runtime.settings.negative_labels,
            )
            if concepts and (prompt.text or prompt.boxes):
                return self._concept_answer(info, prompt, key)
            session = self.runtime.sessions.find(key)
            if session is not None and (attempts or session.model != self.model):
                # the model server lost its state (a restart), or the project now uses another
                # model: the object's clicks stay, its logits (the old model's) do not
                session.logits_id = None
            attempts.append(1)
            return answer_interactive(self.client, info.image_id, prompt, session)

        answer = self._on_task_image(task, run)
        if answer.session is not None:
            answer.session.model = self.model
            self.runtime.sessions.put(key, answer.session)
        else:  # several objects at once: none of them is the one a background click refines
            self.runtime.sessions.forget(key)
        # the refined object's region keeps its id, so Label Studio replaces it (one region per mask only)
        keep_id = answer.session is not None and config.output_converter.one_region_per_mask
        regions = []
        for obj in answer.objects:
            if not obj.mask.any():  # an invisible suggestion that could be accepted: none is made
                continue
            extra: dict[str, Any] = {}
            if keep_id and answer.session is not None:
                extra["id"] = answer.session.region_id
            if obj.concept:
                extra["meta"] = {"text": [obj.concept]}
            object_regions = mask_regions(config, obj.mask, score=obj.score, label=obj.label, extra=extra)
            for region in object_regions:
                if BRUSH_LABELS.matches_result(region):
                    self.runtime.remember_prompt(task.get("id"), region["value"]["rle"], obj.prompt)
            regions += object_regions
        if not regions:
            raise InvalidInput(
                "the model found no mask for this prompt: click inside the object or draw a box"
            )
        return prediction(regions, self.model_version)

    def _concept_answer(
        self, info: ImageInfo, prompt: InteractivePrompt, key: SessionKey
    ) -> InteractiveAnswer:
        """Every instance of the concept of a text and/or smart boxes (SAM 3), with the text typed last on the task."""
        texts = self.runtime.concept_texts
        if prompt.latest_text:  # the TextArea keeps every entry: the concept is the one typed last
            texts.put(key, prompt.latest_text)
        text = prompt.latest_text or texts.find(key)
        objects = segment_concept(
            self.client,
            info.image_id,
            prompt,
            self.config,
            text=text,
            threshold=self.runtime.settings.concept_threshold,
        )
        return InteractiveAnswer(objects=objects, session=None)

    def _preannotate_unless_its_image_fails(self, task: dict[str, Any]) -> dict[str, Any]:
        """The task's prediction, or, when its image cannot be had (no reference, a download
        refused or failed, an image that cannot be decoded or is too large), an answer without
        ``result`` naming why: Label Studio logs it, stores nothing for that task (Retrieve
        Predictions tries it again) and keeps the other tasks' predictions, which one failed
        task used to cost the whole batch. Failures that are not the task's (the model server
        down or without the model, Label Studio refusing the plugin's key) fail the batch."""
        if self.runtime.settings.preannotate == "off":
            return prediction([], self.model_version)
        try:
            image = self._task_image(task, Priority.BULK)
        except SamError as exc:
            server_side = exc.status >= 500 and exc.code not in TASK_IMAGE_ERRORS
            if server_side or exc.code in NOT_THE_TASKS or "unknown model" in exc.detail:
                raise
            logger.warning("pre-annotation of task %s skipped: %s", task.get("id"), exc.detail)
            return _task_error(task, exc.code, public_detail(exc.detail), self.model_version)
        return self._preannotate(task, image)

    def _preannotate(self, task: dict[str, Any], image: tuple[bytes, ImageInfo]) -> dict[str, Any]:
        settings = self.runtime.settings

        def run(info: ImageInfo) -> list[dict[str, Any]]:
            if settings.preannotate == "automask":
                return automask_regions(self.client, info.image_id, self.config, settings)
            if settings.preannotate == "concepts":
                return concept_regions(self.client, info.image_id, self.config, settings)
            return text_regions(self.client, info.image_id, task, self.config, settings)

        regions = self._on_task_image(task, run, priority=Priority.BULK, image=image)
        return prediction(regions, self.model_version)

    def _require_concepts(self) -> None:
        """Refuse ``concepts`` mode on a model that does not answer concept prompts.

        Raises:
            InvalidInput: The project's model is not a SAM 3 model.
            ServiceUnavailable: The model server is still loading the model.
        """
        answers = self.runtime.answers_concepts(self.model)
        if answers:
            return
        entry = self.runtime.model_entry(self.model)
        name = entry.get("name", self.model or "the default")
        if answers is None:
            raise ServiceUnavailable(
                f"the model server is still loading {name!r}; retry Retrieve Predictions in a moment"
            )
        family = f" (family {entry['family']})" if entry.get("family") else ""
        raise InvalidInput(
            f"SAM_PREANNOTATE=concepts needs a SAM 3 model, and this project's model {name!r}{family} does not "
            'answer concept prompts: pick a SAM 3 model for the project (Extra params {"model": "sam3"}, '
            "SAM_PLUGIN_PROJECT_MODELS or SAM_PLUGIN_MODEL) or set SAM_PREANNOTATE to automask or text"
        )

    # -------------------------------------------------------------------- fit
    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Store accepted annotations' brush masks (and their prompts) for training.

        Args:
            event: Webhook action, e.g. ``"ANNOTATION_CREATED"`` (see :data:`FIT_EVENTS`).
            data: Webhook payload: ``{"annotation": {...}, "task": {...}, "project": {...}}``;
                lists under ``annotation`` and ``task`` for ``ANNOTATIONS_CREATED``;
                ``{"annotations": [{"id": ...}], "project": {...}}`` for ``ANNOTATIONS_DELETED``.

        Returns:
            ``{"stored": path | None, "masks": n}`` (a list of those for several
            annotations), ``{"deleted": ...}``, or ``{"skipped": reason}``.
        """
        if event not in FIT_EVENTS:
            return {"skipped": f"event {event} is not used"}
        settings = self.runtime.settings
        if settings.dataset_dir is None:
            return {"skipped": "SAM_DATASET_DIR is not set"}
        writer = DatasetWriter(settings.dataset_dir)
        if event in ("ANNOTATIONS_DELETED", "TASKS_DELETED"):
            key = "annotations" if event == "ANNOTATIONS_DELETED" else "tasks"
            ids = data.get(key)
            if ids is None:  # Label Studio sends none when it deleted nothing it could name (a draft)
                return {"skipped": f"{event} without '{key}'"}
            if not isinstance(ids, list) or not all(isinstance(a, dict) and "id" in a for a in ids):
                raise InvalidInput(f"an {event} webhook needs '{key}': [{{\"id\": ...}}, ...]")
            delete = writer.delete_annotation if key == "annotations" else writer.delete_task
            return {"deleted": sum(delete(self.project_id, item["id"]) for item in ids)}
        if event == "ANNOTATIONS_CREATED":
            annotations, tasks = data.get("annotation"), data.get("task")
            if (
                not isinstance(annotations, list)
                or not isinstance(tasks, list)
                or len(tasks) != len(annotations)
            ):
                raise InvalidInput(
                    "an ANNOTATIONS_CREATED webhook needs lists 'annotation' and 'task' of one length"
                )
            return {
                "stored": [self._fit_or_error(writer, a, t) for a, t in zip(annotations, tasks, strict=True)]
            }
        return self._fit_one(
            writer,
            data.get("annotation") or {},
            data.get("task") or {},
            deleted=event == "ANNOTATION_DELETED",
        )

    def _fit_or_error(self, writer: DatasetWriter, annotation: Any, task: Any) -> dict[str, Any]:
        """:meth:`_fit_one`, or ``{"error": ...}`` for that annotation alone (one of thousands
        that Label Studio sends in one webhook must not cost the others)."""
        try:
            return self._fit_one(writer, annotation, task, deleted=False)
        except SamError as exc:
            ident = annotation.get("id") if isinstance(annotation, dict) else None
            logger.warning("fit: annotation %s not stored: %s", ident, exc.detail)
            return {"error": f"annotation {ident}: {public_detail(exc.detail)}", "code": exc.code}

    def _fit_one(self, writer: DatasetWriter, annotation: Any, task: Any, *, deleted: bool) -> dict[str, Any]:
        """Store (or, ``deleted``, remove) one annotation of one task."""
        if not isinstance(annotation, dict) or not isinstance(task, dict):
            raise InvalidInput("a webhook payload needs 'annotation' and 'task' objects")
        results = annotation.get("result") or []
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise InvalidInput("annotation.result must be a list of Label Studio regions (JSON objects)")
        task_id = task.get("id", annotation.get("task"))
        if annotation.get("id") is None or task_id is None:
            raise InvalidInput("webhook payload needs annotation.id and task.id")
        key = annotation_key(self.project_id, task_id, annotation["id"])
        if deleted:
            return {"deleted": writer.delete(key)}
        brushes = self._brush_regions(results)
        if not brushes:
            writer.delete(key)
            return {"stored": None, "masks": 0}
        check_brush_sizes(brushes)  # before anything is fetched or decoded
        image_data = self.runtime.image_bytes(
            str((task.get("data") or {}).get(self.config.image_key)),
            task_id=task_id,
            project_id=self.project_id,
        )
        pixels = decode_image(image_data)
        _check_brushes_match_image(brushes, pixels)
        masks = self._accepted_masks(brushes, results, task_id)
        if not masks:
            writer.delete(key)
            return {"stored": None, "masks": 0}
        path = writer.write(key, pixels=pixels, image_id=compute_image_id(pixels), masks=masks)
        logger.info("fit: stored %d masks of annotation %s in %s", len(masks), annotation["id"], path)
        return {"stored": str(path) if path else None, "masks": len(masks)}

    def _brush_regions(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The annotation's brush regions of the output control."""
        output_name = self.config.output.name
        return [r for r in results if BRUSH_LABELS.matches_result(r) and r.get("from_name") == output_name]

    def _accepted_masks(
        self, brushes: list[dict[str, Any]], results: list[dict[str, Any]], task_id: Any
    ) -> list[AcceptedMask]:
        """The brush regions' masks (empty ones skipped), with the prompts behind them."""
        prompt_regions = [r for r in results if is_prompt_result(r)]
        masks = []
        for item in brushes:
            mask = BRUSH_LABELS.to_mask(item)
            if not np.any(mask):
                continue
            label = first_label(item)
            prompts = self.runtime.recall_prompt(task_id, item["value"]["rle"])
            if prompts is None:
                prompts = self._prompts_in_annotation(prompt_regions, label, mask.shape)
            masks.append(AcceptedMask(mask=mask, label=label, prompts=prompts))
        return masks

    def _prompts_in_annotation(
        self, regions: list[dict[str, Any]], label: str | None, shape: tuple[int, ...]
    ) -> dict[str, Any]:
        """Prompt regions kept in the annotation with the mask's label (empty when none)."""
        if not regions:
            return {}
        same_label = [r for r in regions if label is None or first_label(r) in (label, None)]
        if not same_label:
            return {}
        height, width = int(shape[0]), int(shape[1])
        try:
            prompt = collect_prompt(
                same_label,
                self.config,
                width=width,
                height=height,
                negative_labels=self.runtime.settings.negative_labels,
            )
        except InvalidInput:
            return {}
        return prompt.as_record()


def _task_error(task: dict[str, Any], code: str, detail: str, model_version: str) -> dict[str, Any]:
    """A batch answer for one task without ``result``: Label Studio logs it and stores nothing."""
    return {"error": f"task {task.get('id')}: {detail}", "code": code, "model_version": model_version}
