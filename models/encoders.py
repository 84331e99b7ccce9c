"""Observation encoder for pick-vla: RGB-D image + proprioception + instruction -> one embedding.

The instruction encoder is a learned word embedding, mean-pooled over the words it knows. A frozen
pretrained sentence embedder would be the better choice for unseen phrasings, but none can be
installed here with its weights (nothing may be downloaded at run time), so words never seen in
training map to one `<unk>` vector.

Proprioception enters without the joint velocities: in demonstrations they reveal the previous
action, and a policy that reads them copies its own last motion instead of looking for the target
(measured: with them, the embedding of an episode's first frame - when the arm is still - located
the named object no better than the tray's centre, while later frames were within ~1 cm).

The image path is a small CNN with CoordConv input channels, FiLM layers conditioned on the
instruction (so the feature maps can light up on the named object) and a spatial softmax that turns
each channel into image coordinates: picking is mostly about *where* the named object is. One
attention map over the last feature map is trained (an auxiliary loss, from the demonstrations'
known target positions) to peak on the named object; its keypoint and the features under it go to
the policy.
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


def proprio_inputs(proprio_dim: int) -> tuple[int, ...]:
    """The proprioception entries the encoder reads by default (sim.pick's layout): the 7 joint angles
    and the gripper width, and in the 21-entry layout the end effector's measured and commanded
    positions too. Joint velocities are left out."""
    if proprio_dim not in (15, 21):
        raise ValueError(f"proprio_dim must be 15 (joints and gripper) or 21 (and the end effector), got {proprio_dim}")
    return (0, 1, 2, 3, 4, 5, 6, 14) + (tuple(range(15, 21)) if proprio_dim == 21 else ())


class ObservationEncoder(nn.Module):
    """(rgb uint8 [B,64,64,3], depth float [B,64,64,1], proprio [B,P], tokens [B,L]) -> [B, embed_dim]."""

    def __init__(self, vocab_size: int, proprio_dim: int = 15, embed_dim: int = 256, text_dim: int = 64,
                 channels: tuple[int, int, int] = (16, 32, 32), image_size: int = 64,
                 proprio_used: tuple[int, ...] | None = None):
        super().__init__()
        self.image_size, self.proprio_dim = image_size, proprio_dim
        self.proprio_used = list(proprio_inputs(proprio_dim) if proprio_used is None else proprio_used)
        c1, c2, c3 = channels
        self.text = InstructionEncoder(vocab_size, text_dim)
        self.conv1 = nn.Conv2d(4 + 2, c1, 4, stride=2, padding=1)   # rgb, depth, 2 coordinate channels
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.film2 = FiLM(text_dim, c2)
        self.conv3 = nn.Conv2d(c2, c3, 3, stride=1, padding=1)
        self.film3 = FiLM(text_dim, c3)
        # Where the named object is, at half the image's resolution (a 2-pixel cell is ~1.2 cm in the
        # tray): the last, instruction-modulated features upsampled, next to the first layer's.
        self.attention_hidden = nn.Conv2d(c3 + c1, 32, 1)
        self.film_attention = FiLM(text_dim, 32)
        self.attention = nn.Conv2d(32, 1, 1)
        self.proprio = nn.Sequential(nn.Linear(len(self.proprio_used), 64), nn.SiLU())
        self.head = nn.Sequential(nn.Linear(2 * c3 + c3 + 2 + 32 + text_dim + 64, embed_dim), nn.SiLU(),
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

    @property
    def attention_grid(self) -> int:
        return self.image_size // 2

    def attention_cell(self, uv: torch.Tensor) -> torch.Tensor:
        """Image positions [N, 2] in [-1, 1] (column, row) -> index of their attention cell [N]."""
        g = self.attention_grid
        cell = ((uv + 1) / 2 * (g - 1)).round().long().clamp(0, g - 1)
        return cell[:, 1] * g + cell[:, 0]

    def visual(self, rgb: torch.Tensor, depth: torch.Tensor, tokens: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the image shows, read for the instruction -> (features [B, V], attention logits [B, H*W]).
        Features: each channel's keypoint, pooled features, the attention's keypoint (where the named
        object is), the features there, and the text."""
        text = self.text(tokens)
        x1 = F.silu(self.conv1(self.image(rgb, depth)))                     # [B, c1, H/2, W/2]
        x = F.silu(self.film2(self.conv2(x1), text))
        x = self.film3(self.conv3(x), text)                                  # [B, c3, H/4, W/4]
        feats = F.silu(x)
        fine = torch.cat([F.interpolate(feats, size=x1.shape[2:], mode="nearest"), x1], dim=1)
        fine = F.silu(self.film_attention(self.attention_hidden(fine), text))
        logits = self.attention(fine).flatten(1)                             # [B, H/2 * W/2]
        where = spatial_softmax(logits.view(-1, 1, *x1.shape[2:]))           # [B, 2]
        attended = (fine.flatten(2) * logits.softmax(-1)[:, None]).sum(-1)   # [B, 32]
        return torch.cat([spatial_softmax(x), feats.mean(dim=(2, 3)), where, attended, text], dim=-1), logits

    @property
    def scene_dim(self) -> int:
        """Size of the scene features: `visual`'s features without the instruction's text vector."""
        c3 = self.conv3.out_channels
        return 2 * c3 + c3 + 2 + self.attention_hidden.out_channels

    def _encode(self, rgb: torch.Tensor, depth: torch.Tensor, proprio: torch.Tensor, tokens: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (embedding [B, E], visual features [B, V], attention logits [B, H*W])."""
        if proprio.dim() != 2 or proprio.shape[1] < self.proprio_dim:
            raise ValueError(f"expected proprio [B, >= {self.proprio_dim}], got {tuple(proprio.shape)}")
        # a model trained on the 15-entry layout reads the first 15 of a newer cell's 21
        proprio = proprio[:, :self.proprio_dim]
        vis, attention = self.visual(rgb, depth, tokens)
        prop = self.proprio(((proprio.float() - self.proprio_mean) / self.proprio_std)[:, self.proprio_used])
        return self.head(torch.cat([vis, prop], dim=-1)), vis, attention

    def embed_and_scene(self, rgb: torch.Tensor, depth: torch.Tensor, proprio: torch.Tensor, tokens: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (embedding [B, E], scene features [B, scene_dim]). The scene features are what the image
        path read from the camera (keypoints, pooled features, the attention's keypoint and the
        features under it) before the head mixes in the arm's joint angles and the instruction's
        words: the drift checks' latents, the counterpart of carracing-vmc's V latent. In the
        embedding the camera can be drowned out: measured on a smoke-trained model, the image
        features' spread between frames was 0.4% of the proprioception's (0.026 against 7.0), and
        halving the camera's brightness moved the embedding by 0.6% of its spread."""
        e, vis, _ = self._encode(rgb, depth, proprio, tokens)
        return e, vis[:, :self.scene_dim]

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, proprio: torch.Tensor,
                tokens: torch.Tensor, return_visual: bool = False):
        """-> embedding [B, E] (and the attention logits [B, H*W] with return_visual)."""
        e, _, attention = self._encode(rgb, depth, proprio, tokens)
        return (e, attention) if return_visual else e
