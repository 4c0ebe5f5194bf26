"""HaMeR (Pavlakos et al., CVPR 2024) written here: a ViTPose-style ViT backbone and the MANO
transformer-decoder head, with parameter names that match the official ``hamer.ckpt``.

Only what per-frame hand features need: crops in, MANO rotations, shape and weak-perspective
camera out. The MANO layer, the discriminator and the renderer are not needed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.errors import PrepError
from pipeline.unpickle import load_checkpoint

PREFIXES = ("backbone.", "mano_head.")
CROP_MARGIN = 32  # the backbone sees the central 256x192 of a 256x256 crop, as in HaMeR


@dataclass(frozen=True)
class BackboneConfig:
    img_size: tuple[int, int] = (256, 192)
    patch_size: int = 16
    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4
    qkv_bias: bool = True


@dataclass(frozen=True)
class HeadConfig:
    dim: int = 1024
    depth: int = 6
    heads: int = 8
    mlp_dim: int = 1024
    dim_head: int = 64
    context_dim: int = 1280
    num_hand_joints: int = 15
    joint_rep: str = "6d"
    ief_iters: int = 1
    transformer_input: str = "zero"


@dataclass(frozen=True)
class HamerConfig:
    """Architecture sizes; the defaults are the released HaMeR model's."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    @classmethod
    def from_file(cls, path: Path) -> "HamerConfig":
        try:
            raw = json.loads(Path(path).read_text())
            backbone = dict(raw.get("backbone", {}))
            if "img_size" in backbone:
                backbone["img_size"] = tuple(backbone["img_size"])
            config = cls(BackboneConfig(**backbone), HeadConfig(**raw.get("head", {})))
        except (OSError, ValueError, TypeError) as exc:
            raise PrepError(f"cannot read HaMeR config {path}: {exc}".splitlines()[0]) from exc
        if config.head.joint_rep != "6d" or config.head.transformer_input != "zero":
            raise PrepError(
                "only HaMeR's 6D joint representation with a zero input token is supported"
            )
        return config

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- backbone (ViTPose's ViT) ----------------------------------------------------------------
class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch, padding=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


class ViTAttention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = ViTAttention(dim, heads, qkv_bias)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTBackbone(nn.Module):
    def __init__(self, c: BackboneConfig) -> None:
        super().__init__()
        grid = (c.img_size[0] // c.patch_size) * (c.img_size[1] // c.patch_size)
        self.patch_embed = PatchEmbed(c.patch_size, c.embed_dim)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, grid + 1, c.embed_dim)
        )  # slot 0: the unused class token
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.num_heads, c.mlp_ratio, c.qkv_bias) for _ in range(c.depth)
        )
        self.last_norm = nn.LayerNorm(c.embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 256, 192]`` -> ``[B, C, 16, 12]``."""
        x, (hp, wp) = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for block in self.blocks:
            x = block(x)
        return self.last_norm(x).transpose(1, 2).reshape(x.shape[0], -1, hp, wp)


# -- MANO transformer-decoder head ------------------------------------------------------------
class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.fn(self.norm(x), **kwargs)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, _ = x.shape
    return x.reshape(b, n, heads, -1).transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return self.to_out(out)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(context_dim, heads * dim_head * 2, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        k, v = (split_heads(t, self.heads) for t in self.to_kv(context).chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(split_heads(self.to_q(x), self.heads), k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(0.0),
            nn.Linear(hidden, dim),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossAttnLayers(nn.Module):
    def __init__(self, c: HeadConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(c.dim, SelfAttention(c.dim, c.heads, c.dim_head)),
                    PreNorm(c.dim, CrossAttention(c.dim, c.context_dim, c.heads, c.dim_head)),
                    PreNorm(c.dim, FeedForward(c.dim, c.mlp_dim)),
                ]
            )
            for _ in range(c.depth)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for self_attn, cross_attn, feed_forward in self.layers:
            x = self_attn(x) + x
            x = cross_attn(x, context=context) + x
            x = feed_forward(x) + x
        return x


class TokenDecoder(nn.Module):
    def __init__(self, c: HeadConfig) -> None:
        super().__init__()
        self.to_token_embedding = nn.Linear(1, c.dim)
        self.pos_embedding = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.transformer = CrossAttnLayers(c)

    def forward(self, token: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.transformer(self.to_token_embedding(token) + self.pos_embedding, context)


class ManoHead(nn.Module):
    def __init__(self, c: HeadConfig) -> None:
        super().__init__()
        self.config = c
        joints = c.num_hand_joints + 1
        self.transformer = TokenDecoder(c)
        self.decpose, self.decshape, self.deccam = (
            nn.Linear(c.dim, joints * 6),
            nn.Linear(c.dim, 10),
            nn.Linear(c.dim, 3),
        )
        self.register_buffer("init_hand_pose", torch.zeros(1, joints * 6))
        self.register_buffer("init_betas", torch.zeros(1, 10))
        self.register_buffer("init_cam", torch.zeros(1, 3))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        b = features.shape[0]
        context = features.flatten(2).transpose(1, 2)  # b c h w -> b (h w) c
        pose, betas, cam = (
            t.expand(b, -1) for t in (self.init_hand_pose, self.init_betas, self.init_cam)
        )
        token = features.new_zeros(b, 1, 1)
        for _ in range(self.config.ief_iters):
            out = self.transformer(token, context).squeeze(1)
            pose, betas, cam = (
                self.decpose(out) + pose,
                self.decshape(out) + betas,
                self.deccam(out) + cam,
            )
        rotations = rot6d_to_rotmat(pose).view(b, -1, 3, 3)
        return {
            "global_orient": rotations[:, :1],
            "hand_pose": rotations[:, 1:],
            "betas": betas,
            "cam": cam,
        }


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt on consecutive (a1, a2) triples; the columns of R are b1, b2, b3."""
    a1, a2 = x.reshape(-1, 2, 3).unbind(1)
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack((b1, b2, torch.linalg.cross(b1, b2, dim=-1)), dim=-1)


class Hamer(nn.Module):
    """``forward([B, 3, 256, 256] normalised crops)`` -> ``global_orient [B,1,3,3]``,
    ``hand_pose [B,15,3,3]``, ``betas [B,10]``, ``cam [B,3]``."""

    def __init__(self, config: HamerConfig | None = None) -> None:
        super().__init__()
        self.config = config or HamerConfig()
        self.backbone = ViTBackbone(self.config.backbone)
        self.mano_head = ManoHead(self.config.head)

    def forward(self, crops: torch.Tensor, return_tokens: bool = False) -> dict[str, torch.Tensor]:
        features = self.backbone(crops[:, :, :, CROP_MARGIN:-CROP_MARGIN])
        out = self.mano_head(features)
        if return_tokens:
            out["backbone_pooled"] = features.mean(dim=(2, 3))
        return out


def hamer_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The ``backbone.``/``mano_head.`` weights of a Lightning ``.ckpt`` or a converted
    ``.safetensors`` file; nothing in the checkpoint's pickle is run."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    checkpoint = load_checkpoint(path)
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise PrepError(f"{path.name} has no state_dict: is it a HaMeR (Lightning) checkpoint?")
    return {
        k: v for k, v in state.items() if k.startswith(PREFIXES) and isinstance(v, torch.Tensor)
    }


def load_hamer(
    checkpoint_path: str | Path, config: HamerConfig | str | Path | None = None
) -> Hamer:
    """Our HaMeR with the checkpoint's weights, loaded strictly (every name and shape must
    match); in eval mode on the CPU."""
    if config is not None and not isinstance(config, HamerConfig):
        config = HamerConfig.from_file(Path(config))
    model = Hamer(config)
    state = hamer_state_dict(Path(checkpoint_path))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        parts = [
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            f"{len(wrong)} with other shapes (e.g. {wrong[0]}: {tuple(state[wrong[0]].shape)} "
            f"vs {tuple(expected[wrong[0]].shape)})"
            if wrong
            else "",
        ]
        raise PrepError(
            f"{Path(checkpoint_path).name} does not fit this HaMeR configuration: "
            + "; ".join(p for p in parts if p)
            + " (pass --hamer-config for other sizes)"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def convert_to_safetensors(
    checkpoint_path: Path, target: Path, config: HamerConfig | None = None
) -> Path:
    """A one-time conversion: only the weights HaMeR features need, in a pickle-free file."""
    from safetensors.torch import save_file

    model = load_hamer(checkpoint_path, config)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(
        state,
        str(target),
        metadata={"config": json.dumps(model.config.as_dict()), "source": checkpoint_path.name},
    )
    return target
