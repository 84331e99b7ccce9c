"""Observation encoder for pick-vla: RGB-D image + proprioception + instruction -> one embedding.

The instruction encoder is a learned word embedding, mean-pooled over the words it knows. A frozen
pretrained sentence embedder would be the better choice for unseen phrasings, but none can be
installed here with its weights (nothing may be downloaded at run time), so words never seen in
training map to one `<unk>` vector.

The image path is a small CNN with CoordConv input channels, FiLM layers conditioned on the
instruction (so the feature maps can light up on the named object) and a spatial softmax that turns
each channel into image coordinates: picking is mostly about *where* the named object is.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

PAD, UNK = "<pad>", "<unk>"
DEPTH_CENTRE, DEPTH_SCALE = 0.9, 0.3   # metres: the tray is 0.6-1.2 m from the camera


class WordTokenizer:
    """Lower-case words -> ids; 0 pads, 1 is every word outside the vocabulary."""

    def __init__(self, vocab: list[str] | tuple[str, ...], max_len: int = 12):
        words = [w for w in vocab if w not in (PAD, UNK)]
        self.vocab = (PAD, UNK, *words)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = max_len

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", text.lower())

    @classmethod
    def fit(cls, texts, max_len: int = 12) -> "WordTokenizer":
        return cls(sorted({w for t in texts for w in cls.words(t)}), max_len)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """-> LongTensor [B, max_len] (truncated / padded)."""
        out = torch.zeros(len(texts), self.max_len, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.index.get(w, 1) for w in self.words(text)][: self.max_len]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


class InstructionEncoder(nn.Module):
    """Token ids [B, L] -> [B, dim]: the mean of the word vectors (padding excluded)."""

    def __init__(self, vocab_size: int, dim: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.SiLU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens > 0).float().unsqueeze(-1)
        pooled = (self.embed(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.out(pooled)


class FiLM(nn.Module):
    """Feature-wise scale and shift of a [B, C, H, W] map from a condition vector."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)  # starts as the identity
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(cond).chunk(2, dim=-1)
        return x * (1 + gamma[..., None, None]) + beta[..., None, None]


def spatial_softmax(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, 2C]: the expected (x, y) in [-1, 1] under each channel's softmax."""
    b, c, h, w = x.shape
    probs = x.flatten(2).softmax(-1).view(b, c, h, w)
    ys = torch.linspace(-1, 1, h, device=x.device)
    xs = torch.linspace(-1, 1, w, device=x.device)
    ex = (probs.sum(2) * xs).sum(-1)
    ey = (probs.sum(3) * ys).sum(-1)
    return torch.cat([ex, ey], dim=-1)


class ObservationEncoder(nn.Module):
    """(rgb uint8 [B,64,64,3], depth float [B,64,64,1], proprio [B,P], tokens [B,L]) -> [B, embed_dim]."""

    def __init__(self, vocab_size: int, proprio_dim: int = 15, embed_dim: int = 256, text_dim: int = 64,
                 channels: tuple[int, int, int] = (16, 32, 32), image_size: int = 64):
        super().__init__()
        self.image_size, self.proprio_dim = image_size, proprio_dim
        c1, c2, c3 = channels
        self.text = InstructionEncoder(vocab_size, text_dim)
        self.conv1 = nn.Conv2d(4 + 2, c1, 4, stride=2, padding=1)   # rgb, depth, 2 coordinate channels
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.film2 = FiLM(text_dim, c2)
        self.conv3 = nn.Conv2d(c2, c3, 3, stride=1, padding=1)
        self.film3 = FiLM(text_dim, c3)
        self.proprio = nn.Sequential(nn.Linear(proprio_dim, 64), nn.SiLU())
        self.head = nn.Sequential(nn.Linear(2 * c3 + c3 + 64 + text_dim, embed_dim), nn.SiLU(),
                                  nn.Linear(embed_dim, embed_dim), nn.LayerNorm(embed_dim))
        # Proprioception statistics of the training data (set once before training, saved with it).
        self.register_buffer("proprio_mean", torch.zeros(proprio_dim))
        self.register_buffer("proprio_std", torch.ones(proprio_dim))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, image_size), torch.linspace(-1, 1, image_size), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)

    def set_proprio_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.proprio_mean.copy_(mean)
        self.proprio_std.copy_(std.clamp(min=1e-3))

    def image(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Channel-last inputs -> normalised [B, 6, H, W]."""
        n = self.image_size
        if rgb.shape[1:] != (n, n, 3) or depth.shape[1:] != (n, n, 1):
            raise ValueError(f"expected rgb [B,{n},{n},3] and depth [B,{n},{n},1], got {tuple(rgb.shape)}, "
                             f"{tuple(depth.shape)}")
        x = torch.cat([rgb.float() / 255.0, (depth.float() - DEPTH_CENTRE) / DEPTH_SCALE], dim=-1)
        x = x.permute(0, 3, 1, 2)
        return torch.cat([x, self.coords.expand(x.shape[0], -1, -1, -1)], dim=1)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, proprio: torch.Tensor,
                tokens: torch.Tensor) -> torch.Tensor:
        if proprio.shape[1:] != (self.proprio_dim,):
            raise ValueError(f"expected proprio [B, {self.proprio_dim}], got {tuple(proprio.shape)}")
        text = self.text(tokens)
        x = F.silu(self.conv1(self.image(rgb, depth)))
        x = F.silu(self.film2(self.conv2(x), text))
        x = self.film3(self.conv3(x), text)
        keypoints = spatial_softmax(x)
        pooled = F.silu(x).mean(dim=(2, 3))
        prop = self.proprio((proprio.float() - self.proprio_mean) / self.proprio_std)
        return self.head(torch.cat([keypoints, pooled, prop, text], dim=-1))
