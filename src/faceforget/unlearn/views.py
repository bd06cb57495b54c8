"""Build the view banks: clean + augmented copies of each image, pushed through the frozen prefix once."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from faceforget.data.augment import AugmentConfig, augment
from faceforget.models.spec import FaceModel
from faceforget.progress import progress_bar
from faceforget.seeding import torch_generator
from faceforget.unlearn.distributed import Ranks, share_rows
from faceforget.unlearn.method import ViewBank


@torch.no_grad()
def build_view_bank(
    original_model: FaceModel, pixels: torch.Tensor, labels: torch.Tensor, *, views: int,
    augment_cfg: AugmentConfig, start_block: int, seed: int, stream: str, batch_size: int = 64, progress: bool = True,
    ranks: Ranks | None = None, device: str = "cpu",
) -> ViewBank:
    """
    `views` views per image (view 0 clean), as the input of block `start_block` (uint8 pixels if 0).

    Row order is image-major (row = image * views + view), so a view maps back to its image. Under DDP
    each rank computes every `ranks.world`-th image batch and the rows are then shared; a batch's
    augmentation depends only on (seed, stream, first image), so the bank is the same for any world size.
    `original_model` must be on `device`; the bank is returned on the CPU.
    """
    original_model.eval()
    ranks = ranks or Ranks()
    n = pixels.shape[0]
    if n == 0:
        empty = (0, *pixels.shape[3:0:-1]) if start_block == 0 else (0,)
        return ViewBank(torch.empty(empty), labels.repeat_interleave(views), torch.empty(0, 0),
                        torch.empty(0, dtype=torch.long), views)
    h1 = original_model.forward_prefix(pixels[:1].permute(0, 3, 1, 2).float().to(device), start_block)
    inputs = torch.zeros((n * views, *h1.shape[1:]), dtype=torch.uint8 if start_block == 0 else h1.dtype)
    embeds = torch.zeros((n * views, original_model.preprocess.embedding_dim))
    mine = [lo for chunk, lo in enumerate(range(0, n, batch_size)) if ranks.owns(chunk)]
    with progress_bar(f"caching {stream} views", sum(min(batch_size, n - lo) for lo in mine) * views,
                      progress) as bar:
        for lo in mine:
            x = pixels[lo:lo + batch_size].permute(0, 3, 1, 2).float()
            gen = torch_generator(seed, "views", stream, lo)
            batch = torch.stack([x] + [augment(x, augment_cfg, gen).round() for _ in range(views - 1)], 1)
            batch = batch.flatten(0, 1).to(device)  # (images * views, C, H, W), image-major
            h = original_model.forward_prefix(batch, start_block)
            rows = slice(lo * views, lo * views + batch.shape[0])
            embeds[rows] = F.normalize(original_model.forward_from(h, start_block), dim=1).cpu()
            inputs[rows] = (h.to(torch.uint8) if start_block == 0 else h).cpu()
            bar.advance(batch.shape[0])
    share_rows([inputs, embeds], ranks)
    return ViewBank(inputs=inputs, labels=labels.repeat_interleave(views), z_original=embeds,
                    image=torch.arange(n).repeat_interleave(views), views_per_image=views)
