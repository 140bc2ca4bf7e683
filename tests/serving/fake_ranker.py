"""A stand-in for the CLIP ranker of text prompts (CLIP's weights are not on test machines)."""

from __future__ import annotations


class FakeRanker:
    """Stands in for CLIP: ranks records by area, remembers its arguments."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.calls: list[dict] = []

    def rank(self, image, records, text, *, box=None, points=None, labels=None, top_k=3):
        self.calls.append(
            {
                "text": text,
                "box": box,
                "points": points,
                "labels": labels,
                "n": len(records),
                "shape": image.shape,
            }
        )
        ranked = sorted(records, key=lambda r: -r["area"])[:top_k]
        return [(r, 0.9 - 0.1 * i) for i, r in enumerate(ranked)]
