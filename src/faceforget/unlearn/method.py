"""The method plug-in contract: a method turns a batch into named loss terms; the engine does the rest."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn

from faceforget.config import EngineConfig
from faceforget.models.spec import FaceModel

if TYPE_CHECKING:
    from faceforget.unlearn.recipe import ReferenceRecipe

LossTerms = dict[str, torch.Tensor]


class MethodParams(BaseModel):
    """Base of every method's knobs: unknown keys are errors; a knob's old name (`renamed`) names the new one."""

    model_config = ConfigDict(extra="forbid")
    renamed: ClassVar[dict[str, str]] = {}  # old name -> new name
    # knobs added after runs were signed that change nothing at their default: a run's signature leaves them
    # out while they are at it, so finished runs stay reusable when such a knob appears (docs/run_folder.md)
    added_off: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _reject_old_names(cls, data: object) -> object:
        old = [k for k in data if k in cls.renamed] if isinstance(data, dict) else []
        if old:
            raise ValueError("params were renamed: " + ", ".join(f"{k} -> {cls.renamed[k]}" for k in old))
        return data

    def signed(self) -> dict:
        """The knobs a run's signature covers (JSON values): all of them but `added_off` ones at their default."""
        fields = type(self).model_fields
        return {k: v for k, v in self.model_dump(mode="json").items()
                if not (k in self.added_off and getattr(self, k) == fields[k].default)}


@dataclass
class ViewBank:
    """
    Every view (clean + augmented copies) of one stream's images, ready for the trainable suffix.

    `inputs` are prefix activations (or float pixels when the whole net trains); `z_original` holds the
    frozen original model's L2-normalised embedding of each view; `image` maps a view to its image.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    z_original: torch.Tensor
    image: torch.Tensor
    views_per_image: int

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def take(self, idx: torch.Tensor) -> "Part":
        """The rows `idx` as a batch part."""
        return Part(self.inputs[idx].float(), self.labels[idx], self.z_original[idx], self.image[idx], idx)

    def clean(self) -> torch.Tensor:
        """Indices of the un-augmented view of every image."""
        return torch.arange(0, len(self), self.views_per_image)

    def to(self, device: str | torch.device) -> "ViewBank":
        """The bank with every tensor on `device` (itself when already there)."""
        if self.inputs.device == torch.device(device):
            return self
        return ViewBank(self.inputs.to(device), self.labels.to(device), self.z_original.to(device),
                        self.image.to(device), self.views_per_image)


@dataclass
class Part:
    """One stream's share of a batch (fields as in `ViewBank`)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    z_original: torch.Tensor
    image: torch.Tensor
    rows: torch.Tensor  # the bank rows this part was taken from (for per-view values a method precomputed)

    def __len__(self) -> int:
        return self.inputs.shape[0]


@dataclass
class Batch:
    """What a method sees at one step: a forget part, a retain part (either may be None) and the step."""

    forget: Part | None
    retain: Part | None
    step: int


@dataclass
class MethodContext:
    """Everything a method may read: models, banks, labels; and what it may add (heads, masks, params)."""

    model: FaceModel
    original_model: FaceModel  # frozen, never trained
    start_block: int
    forget: ViewBank
    retain: ViewBank
    identity_names: list[str]
    forget_label_ids: list[int]
    forget_pixels: torch.Tensor  # uint8 NHWC clean forget images (for pixel-space attacks)
    config: EngineConfig = field(default_factory=EngineConfig)  # read-only: batch sizes, steps, seed
    extra_params: list[nn.Parameter] = field(default_factory=list)
    param_mask: dict[str, torch.Tensor] | None = None
    state: dict[str, object] = field(default_factory=dict)
    spread: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], torch.Tensor] | None = None

    def embed(self, part: Part) -> torch.Tensor:
        """The trainable model's L2-normalised embeddings of a batch part (with gradients)."""
        def forward(x: torch.Tensor) -> torch.Tensor:
            return F.normalize(self.model.forward_from(x, self.start_block), dim=1)

        # under DDP the engine sets `spread` for its steps: each rank embeds a slice, all get every row
        return forward(part.inputs) if self.spread is None else self.spread(forward, part.inputs)

    @property
    def seed(self) -> int:
        """The run's seed (derive method-specific generators from it)."""
        return self.config.seed

    @property
    def n_identities(self) -> int:
        """Number of training identities (forget + retain)."""
        return len(self.identity_names)


class UnlearningMethod(ABC):
    """Base of all methods: `loss` is required; `setup`, `streams` and `finalize` are optional hooks."""

    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    recipe: ClassVar[ReferenceRecipe | None] = None  # how the reference code trains it (unlearn/recipe.py)

    def __init__(self, params: MethodParams | dict | None = None) -> None:
        self.params = params if isinstance(params, self.Params) else self.Params.model_validate(params or {})

    def setup(self, ctx: MethodContext) -> None:
        """Precompute what the losses need (heads, teacher outputs, masks); default: nothing."""

    def finalize(self, ctx: MethodContext) -> None:
        """Closed-form adjustments after the last step (no gradients); default: nothing."""

    def streams(self, step: int, ctx: MethodContext) -> tuple[bool, bool]:
        """Which parts (forget, retain) the batch at `step` carries; default both."""
        return True, True

    @abstractmethod
    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """Named, already weighted scalar loss terms; the engine sums and minimises them."""
