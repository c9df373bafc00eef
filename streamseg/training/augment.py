"""The paper's augmentation, on the fly, applied to image and mask together (torchvision.transforms.v2):
scale 80–120 %, translate ±20 % in both directions, rotation ±10°, shear ±2°. The box is derived
from the transformed mask afterwards (tighter than transforming the box). Optional intensity
augmentation (gain, gamma, speckle) for ultrasound, off in the paper configuration."""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


class PaperAugment:
    def __init__(self, intensity: bool = False, hflip: bool = False, tries: int = 5):
        self.affine = v2.RandomAffine(degrees=10, translate=(0.2, 0.2), scale=(0.8, 1.2), shear=(-2, 2, -2, 2))
        self.hflip = v2.RandomHorizontalFlip(0.5) if hflip else None
        self.intensity = intensity
        self.tries = tries

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img, msk = tv_tensors.Image(image), tv_tensors.Mask(mask)
        for _ in range(self.tries):  # keep the nerve in view: retry a transform that moves it out
            out_img, out_msk = self.affine(img, msk)
            if self.hflip is not None:
                out_img, out_msk = self.hflip(out_img, out_msk)
            if out_msk.sum() >= 0.5 * msk.sum():
                img, msk = out_img, out_msk
                break
        image = img.as_subclass(torch.Tensor)
        if self.intensity:
            image = intensity_jitter(image)
        return image, msk.as_subclass(torch.Tensor)


def intensity_jitter(image: torch.Tensor) -> torch.Tensor:
    """Gain 0.8–1.2, gamma 0.7–1.4, multiplicative speckle (σ up to 0.15) on a [0,1] image."""
    valid = image > 0  # leave the zero padding at zero
    gain = torch.empty(1).uniform_(0.8, 1.2)
    gamma = torch.exp(torch.empty(1).uniform_(-0.35, 0.35))
    sigma = torch.empty(1).uniform_(0.0, 0.15)
    grey = image.mean(0, keepdim=True)
    speckle = 1 + sigma * torch.randn_like(grey)
    out = (image.clamp(0, 1) ** gamma) * gain * speckle
    return torch.where(valid, out.clamp(0, 1), image)
