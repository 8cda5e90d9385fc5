"""The ADM UNet of guided-diffusion as I2SB uses it: config, presets, and the network.

State-dict keys and shapes are exactly those of guided-diffusion's `UNetModel.state_dict()`
(docs/spec.md section 5, tests/golden/adm256_keys.txt). I2SB checkpoints add `OFFICIAL_PREFIX` to
every key; loaders strip or add it. The network takes I2SB's float time levels
(`noise_levels[n]`), not integer steps, and in the conditioned variant the input is
`cat([x_t, x1], dim=1)`.

Bundled CPU models may set `patch_size` p > 1: the input is folded space-to-depth (pixel
unshuffle) into p*p times the channels at 1/p of the size, and the output unfolded back
(pixel shuffle), the "patching" of simple diffusion (Hoogeboom et al., 2023). Every layer then
runs on p*p times fewer pixels, so a wider network costs what a narrow full-size one did; for
4x super-resolution the information of x1 lives on the low-resolution grid anyway. Official
checkpoints are p = 1, where nothing changes.
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .blocks import (
    AttentionBlock,
    Downsample,
    EmbedSequential,
    GroupNorm32,
    ResBlock,
    Upsample,
    timestep_embedding,
    zeroed,
)

OFFICIAL_PREFIX = "diffusion_model."

# guided-diffusion's `channel_mult=""` defaults, by image size.
_DEFAULT_CHANNEL_MULT = {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of an ADM UNet; `attention_resolutions` are downsample rates (1 = full size).

    `image_size` is the training size only: the network runs at any H, W that are multiples
    of `size_multiple`. `patch_size` p folds p x p pixels into channels before the first
    layer (see the module's docstring); 1 is guided-diffusion's network.
    `num_head_channels = -1` means "use num_heads heads"; otherwise each attention block
    has width // num_head_channels heads. `num_heads_upsample = -1` means num_heads in the
    decoder.
    """

    image_size: int
    in_channels: int
    out_channels: int
    model_channels: int
    num_res_blocks: int
    channel_mult: tuple[int, ...]
    attention_resolutions: tuple[int, ...]
    num_heads: int = 4
    num_head_channels: int = 64
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    dropout: float = 0.0
    patch_size: int = 1

    def __post_init__(self) -> None:
        for name in ("image_size", "in_channels", "out_channels", "model_channels"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("num_res_blocks", self.num_res_blocks, minimum=0)
        _check_int("patch_size", self.patch_size, minimum=1)
        for name in ("num_heads", "num_head_channels", "num_heads_upsample"):
            value = getattr(self, name)
            _check_int(name, value, minimum=-1)
            if value == 0:
                raise ValueError(f"UNetConfig.{name} must be positive or -1, got 0")
        if self.num_heads == -1:
            raise ValueError("UNetConfig.num_heads must be positive")
        for name in ("use_scale_shift_norm", "resblock_updown"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"UNetConfig.{name} must be a bool, got {getattr(self, name)!r}")
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise ValueError(f"UNetConfig.dropout must be a number, got {dropout!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {dropout!r}")
        object.__setattr__(self, "dropout", float(dropout))
        self._check_tuples()
        self._check_widths()

    def _check_tuples(self) -> None:
        for name in ("channel_mult", "attention_resolutions"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
                raise ValueError(f"UNetConfig.{name} must be a tuple of ints, got {value!r}")
            for item in value:
                _check_int(name, item, minimum=1)
            object.__setattr__(self, name, tuple(value))
        if not self.channel_mult:
            raise ValueError("UNetConfig.channel_mult must not be empty")
        rates = {2**level for level in range(len(self.channel_mult))}
        unreachable = sorted(set(self.attention_resolutions) - rates)
        if unreachable:
            # A rate the net never reaches silently drops attention: usually pixel resolutions
            # ("16,8") were passed where downsample rates belong.
            raise ValueError(
                f"UNetConfig.attention_resolutions {unreachable} are not downsample rates of "
                f"this net (possible: {sorted(rates)}); convert pixel resolutions r to "
                "image_size // r"
            )

    def _check_widths(self) -> None:
        for mult in self.channel_mult:
            width = mult * self.model_channels
            if width % 32:
                raise ValueError(
                    f"UNetConfig: block width {width} (model_channels * channel_mult) is not a "
                    "multiple of 32, which GroupNorm(32) needs"
                )
        # The middle block always has attention, whatever attention_resolutions says.
        self.heads_for(self.channel_mult[-1] * self.model_channels, self.num_heads)
        for level, mult in enumerate(self.channel_mult):
            if 2**level in self.attention_resolutions:
                width = mult * self.model_channels
                for heads in (self.num_heads, self.upsample_heads):
                    self.heads_for(width, heads)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: the patch, then one halving per level
        but the last."""
        return self.patch_size * 2 ** (len(self.channel_mult) - 1)

    @property
    def conditioned(self) -> bool:
        """True when the net also takes the degraded image x1 as input (I2SB `cond_x1`)."""
        return self.in_channels >= 2 * self.out_channels

    @property
    def cond_channels(self) -> int:
        """The channels of the cond input: x1's, then any planes a checkpoint's condition adds
        (models/condition.py); 0 for an unconditioned net."""
        return self.in_channels - self.out_channels if self.conditioned else 0

    @property
    def upsample_heads(self) -> int:
        return self.num_heads if self.num_heads_upsample == -1 else self.num_heads_upsample

    def heads_for(self, width: int, num_heads: int) -> int:
        """Number of attention heads of a block of this width (guided-diffusion's rule)."""
        if self.num_head_channels == -1:
            if width % num_heads:
                raise ValueError(f"UNetConfig: width {width} not divisible by {num_heads} heads")
            return num_heads
        if width % self.num_head_channels:
            raise ValueError(
                f"UNetConfig: attention width {width} is not a multiple of "
                f"num_head_channels {self.num_head_channels}"
            )
        return width // self.num_head_channels

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists); `from_dict` inverts it."""
        d = dataclasses.asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_resolutions"] = list(self.attention_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UNetConfig":
        """Build from `to_dict` output; every field is required and no other key is allowed,
        except the fields added later (`patch_size`), which checkpoints written before them
        lack and which default to guided-diffusion's value."""
        if not isinstance(d, Mapping):
            raise ValueError(f"UNetConfig.from_dict needs a mapping, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        missing = [n for n in names if n not in d and n not in _ADDED_FIELDS]
        if unknown or missing:
            raise ValueError(f"UNetConfig: unknown keys {unknown}, missing keys {missing}")
        return cls(**{n: d[n] for n in names if n in d})


_ADDED_FIELDS = ("patch_size",)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"UNetConfig.{name} must be an integer >= {minimum}, got {value!r}")


def config_from_guided_diffusion(kwargs: Mapping[str, Any]) -> UNetConfig:
    """Map guided-diffusion `create_model` options (an I2SB model-kwargs dict) to a UNetConfig.

    There, `attention_resolutions` is a string of pixel resolutions ("32,16,8" at 256 px means
    rates 8, 16, 32), `channel_mult=""` picks a default by image size, and `learn_sigma`
    doubles the output channels. Options that change the architecture beyond what ADMUNet
    builds (class conditioning, the new attention order) are refused.
    """
    for flag in ("class_cond", "use_new_attention_order"):
        if kwargs.get(flag, False):
            raise ValueError(f"guided-diffusion option {flag}=True is not supported")
    try:
        size = int(kwargs["image_size"])
        mult_text = str(kwargs.get("channel_mult", ""))
        if mult_text:
            mult = tuple(int(m) for m in mult_text.split(","))
        elif size in _DEFAULT_CHANNEL_MULT:
            mult = _DEFAULT_CHANNEL_MULT[size]
        else:
            raise ValueError(f"no default channel_mult for image_size {size}")
        res_text = str(kwargs.get("attention_resolutions", ""))
        rates = tuple(sorted(size // int(r) for r in res_text.split(",") if r.strip()))
        out_channels = 6 if kwargs.get("learn_sigma", False) else 3
        return UNetConfig(
            image_size=size,
            in_channels=int(kwargs.get("in_channels", 3)),
            out_channels=out_channels,
            model_channels=int(kwargs["num_channels"]),
            num_res_blocks=int(kwargs["num_res_blocks"]),
            channel_mult=mult,
            attention_resolutions=rates,
            num_heads=int(kwargs.get("num_heads", 4)),
            num_head_channels=int(kwargs.get("num_head_channels", -1)),
            num_heads_upsample=int(kwargs.get("num_heads_upsample", -1)),
            use_scale_shift_norm=bool(kwargs.get("use_scale_shift_norm", True)),
            resblock_updown=bool(kwargs.get("resblock_updown", False)),
            dropout=float(kwargs.get("dropout", 0.0)),
        )
    except KeyError as e:
        raise ValueError(f"guided-diffusion options lack {e.args[0]!r}") from e
    except (TypeError, ZeroDivisionError) as e:
        raise ValueError(f"bad guided-diffusion options: {e}") from e


def _adm256() -> UNetConfig:
    # The official I2SB network (spec section 5): 552,807,171 parameters.
    return UNetConfig(
        image_size=256,
        in_channels=3,
        out_channels=3,
        model_channels=256,
        num_res_blocks=2,
        channel_mult=(1, 1, 2, 2, 4, 4),
        attention_resolutions=(8, 16, 32),
        num_head_channels=64,
    )


def _adm_small() -> UNetConfig:
    # tests/golden/unet_small: every block type of adm256 at 1.4M parameters.
    return UNetConfig(
        image_size=32,
        in_channels=3,
        out_channels=3,
        model_channels=32,
        num_res_blocks=2,
        channel_mult=(1, 1, 2),
        attention_resolutions=(2, 4),
        num_head_channels=16,
    )


def _tiny() -> UNetConfig:
    # Bundled CPU models. No attention at any rate, but ADM's middle block always has one: four
    # levels put it at 1/8 of the picture, where its quadratic cost stays small next to the
    # full-resolution convolutions (at 1/4 it dominated a 512x512 call).
    return UNetConfig(
        image_size=64,
        in_channels=3,
        out_channels=3,
        model_channels=32,
        num_res_blocks=1,
        channel_mult=(1, 2, 2, 2),
        attention_resolutions=(),
        num_head_channels=32,
    )


def _small() -> UNetConfig:
    # model_channels 64, not 48: GroupNorm(32) needs every width to be a multiple of 32.
    return UNetConfig(
        image_size=64,
        in_channels=3,
        out_channels=3,
        model_channels=64,
        num_res_blocks=1,
        channel_mult=(1, 2, 2, 2),
        attention_resolutions=(),
    )


_PRESETS = {"adm256": _adm256, "adm-small": _adm_small, "tiny": _tiny, "small": _small}
PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def preset(name: str, *, conditioned: bool = False) -> UNetConfig:
    """A named architecture; `conditioned` doubles the input channels (x_t and x1)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown UNet preset {name!r}; known: {', '.join(PRESET_NAMES)}")
    config = _PRESETS[name]()
    if conditioned:
        config = dataclasses.replace(config, in_channels=2 * config.out_channels)
    return config


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


class ADMUNet(nn.Module):
    """guided-diffusion's UNetModel (no class conditioning), keyed like its state dict."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        emb_dim = 4 * c.model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(c.model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.input_blocks, skip_widths = self._build_encoder(emb_dim)
        ch = skip_widths[-1]
        self.middle_block = EmbedSequential(
            self._res(ch, emb_dim, ch),
            AttentionBlock(ch, c.heads_for(ch, c.num_heads)),
            self._res(ch, emb_dim, ch),
        )
        self.output_blocks = self._build_decoder(emb_dim, skip_widths)
        first = c.channel_mult[0] * c.model_channels
        folded_out = c.out_channels * c.patch_size**2
        self.out = nn.Sequential(
            GroupNorm32(first), nn.SiLU(), zeroed(nn.Conv2d(first, folded_out, 3, padding=1))
        )

    def _res(self, ch: int, emb_dim: int, out: int, **resample: bool) -> ResBlock:
        c = self.config
        return ResBlock(
            ch,
            emb_dim,
            out,
            dropout=c.dropout,
            use_scale_shift_norm=c.use_scale_shift_norm,
            **resample,
        )

    def _build_encoder(self, emb_dim: int) -> tuple[nn.ModuleList, list[int]]:
        """Input blocks, and the width of each one's output (the skips the decoder consumes)."""
        c = self.config
        ch = c.channel_mult[0] * c.model_channels
        stem = nn.Conv2d(c.in_channels * c.patch_size**2, ch, 3, padding=1)
        blocks = nn.ModuleList([EmbedSequential(stem)])
        widths = [ch]
        for level, mult in enumerate(c.channel_mult):
            rate = 2**level
            for _ in range(c.num_res_blocks):
                layers: list[nn.Module] = [self._res(ch, emb_dim, mult * c.model_channels)]
                ch = mult * c.model_channels
                if rate in c.attention_resolutions:
                    layers.append(AttentionBlock(ch, c.heads_for(ch, c.num_heads)))
                blocks.append(EmbedSequential(*layers))
                widths.append(ch)
            if level < len(c.channel_mult) - 1:
                if c.resblock_updown:
                    down: nn.Module = self._res(ch, emb_dim, ch, down=True)
                else:
                    down = Downsample(ch, use_conv=True)
                blocks.append(EmbedSequential(down))
                widths.append(ch)
        return blocks, widths

    def _build_decoder(self, emb_dim: int, skip_widths: list[int]) -> nn.ModuleList:
        c = self.config
        skips = list(skip_widths)
        ch = skips[-1]
        blocks = nn.ModuleList()
        for level in reversed(range(len(c.channel_mult))):
            rate, width = 2**level, c.channel_mult[level] * c.model_channels
            for i in range(c.num_res_blocks + 1):
                layers: list[nn.Module] = [self._res(ch + skips.pop(), emb_dim, width)]
                ch = width
                if rate in c.attention_resolutions:
                    layers.append(AttentionBlock(ch, c.heads_for(ch, c.upsample_heads)))
                if level > 0 and i == c.num_res_blocks:
                    if c.resblock_updown:
                        layers.append(self._res(ch, emb_dim, ch, up=True))
                    else:
                        layers.append(Upsample(ch, use_conv=True))
                blocks.append(EmbedSequential(*layers))
        return blocks

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: [B, C, H, W] state x_t; t: [B] or scalar float time levels; cond: [B, C', H, W],
        x1 and any planes of the checkpoint's condition (C' = config.cond_channels).

        Returns the network output [B, out_channels, H, W] (I2SB: (x_t - x0) / std_fwd[n]).
        """
        x = self._input(x, cond)  # [B, in_channels, H, W]
        p = self.config.patch_size
        if p > 1:
            x = nn.functional.pixel_unshuffle(x, p)  # [B, in_channels * p^2, H / p, W / p]
        t = self._times(t, x)  # [B]
        emb_in = timestep_embedding(t, self.config.model_channels)  # [B, C]
        emb = self.time_embed(emb_in.to(self.time_embed[0].weight.dtype))  # [B, 4C]
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)  # [B, C_l, H / (p 2^l), W / (p 2^l)]
            skips.append(h)
        h = self.middle_block(h, emb)  # [B, C_last, H / m, W / m], m = size_multiple
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)  # skip concat on channels
        h = self.out(h)  # [B, out_channels * p^2, H / p, W / p]
        return nn.functional.pixel_shuffle(h, p) if p > 1 else h  # [B, out_channels, H, W]

    def _input(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        if x.ndim != 4:
            raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
        m = c.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"height and width must be multiples of {m}, got {tuple(x.shape[-2:])}"
            )
        if c.conditioned and cond is None:
            raise ValueError("this network is conditioned on x1: pass cond")
        if not c.conditioned and cond is not None:
            raise ValueError("this network is not conditioned: cond must be None")
        if cond is not None:
            expected = (x.shape[0], c.cond_channels, *x.shape[2:])
            if tuple(cond.shape) != expected:
                raise ValueError(f"cond shape {tuple(cond.shape)} is not {expected}")
            x = torch.cat([x, cond], dim=1)  # x_t first, then x1, as in I2SB's Image256Net
        if x.shape[1] != c.in_channels:
            raise ValueError(f"expected {c.in_channels} input channels, got {x.shape[1]}")
        return x

    @staticmethod
    def _times(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t, batch = torch.as_tensor(t, device=x.device), x.shape[0]
        if t.ndim == 0:
            return t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be a scalar or of shape [{batch}], got {tuple(t.shape)}")
        return t
