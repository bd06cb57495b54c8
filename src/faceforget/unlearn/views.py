"""Build the view banks: clean + augmented copies of each image, pushed through the frozen prefix once."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from faceforget.data.augment import AugmentConfig, augment
from faceforget.models.spec import FaceModel
from faceforget.progress import progress_bar
from faceforget.seeding import torch_generator
from faceforget.unlearn.method import ViewBank


@torch.no_grad()
def build_view_bank(
    original_model: FaceModel, pixels: torch.Tensor, labels: torch.Tensor, *, views: int,
    augment_cfg: AugmentConfig, start_block: int, seed: int, stream: str, batch_size: int = 64, progress: bool = True,
) -> ViewBank:
    """
    `views` views per image (view 0 clean), as the input of block `start_block` (uint8 pixels if 0).

    Row order is image-major (row = image * views + view), so a view maps back to its image.
    """
    original_model.eval()
    n = pixels.shape[0]
    inputs, embeds = [], []
    with progress_bar(f"caching {stream} views", n * views, progress) as bar:
        for lo in range(0, n, batch_size):
            x = pixels[lo:lo + batch_size].permute(0, 3, 1, 2).float()
            gen = torch_generator(seed, "views", stream, lo)
            batch = torch.stack([x] + [augment(x, augment_cfg, gen).round() for _ in range(views - 1)], 1)
            batch = batch.flatten(0, 1)  # (images * views, C, H, W), image-major
            h = original_model.forward_prefix(batch, start_block)
            embeds.append(F.normalize(original_model.forward_from(h, start_block), dim=1))
            inputs.append(h.to(torch.uint8) if start_block == 0 else h)
            bar.advance(batch.shape[0])
    image = torch.arange(n).repeat_interleave(views)
    empty = (0, *pixels.shape[3:0:-1]) if start_block == 0 else (0,)
    return ViewBank(
        inputs=torch.cat(inputs) if inputs else torch.empty(empty),
        labels=labels.repeat_interleave(views),
        z_original=torch.cat(embeds) if embeds else torch.empty(0, 0),
        image=image,
        views_per_image=views,
    )
