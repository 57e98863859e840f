"""Tiny random models in the real on-disk formats, so tests load them through the product's own
loader (core.models.registry) and run the whole AI path on CPU in seconds.

The shapes follow diffusers' own pipeline tests, with two corrections that matter for a
ControlNet inpainting pipeline: the VAE has four blocks (downsampling by 8, like SD1.5), and the
ControlNet is built directly with a 4-channel input and a conditioning embedding that also
downsamples by 8 (``ControlNetModel.from_unet`` on a 9-channel inpainting UNet would copy the
9-channel input conv and break). Every model is built under a fixed seed, so the weights, and
therefore the test outputs, are the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import torch

UNET = dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    sample_size=32,
    in_channels=9,  # 4 noisy latents + 1 mask + 4 masked-image latents
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=8,
)
CONTROLNET = dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    in_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=8,
    # four stages -> three stride-2 convs: the control image is downsampled by 8, like the VAE
    conditioning_embedding_out_channels=(8, 8, 16, 16),
)
VAE = dict(
    block_out_channels=(8, 8, 16, 16),
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=8,
    sample_size=64,
)
TEXT_ENCODER = dict(
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=1,
    hidden_size=32,
    intermediate_size=37,
    layer_norm_eps=1e-05,
    num_attention_heads=4,
    num_hidden_layers=2,
    vocab_size=1000,
    max_position_embeddings=77,
)
DEPTH = dict(
    image_size=32,
    patch_size=8,
    num_channels=3,
    hidden_size=32,
    num_hidden_layers=4,
    backbone_out_indices=[0, 1, 2, 3],
    num_attention_heads=4,
    intermediate_size=37,
    neck_hidden_sizes=[16, 16, 32, 32],
    fusion_hidden_size=16,
    head_in_index=-1,
    is_hybrid=False,
    initializer_range=0.2,  # at the default 0.02 the random head's output is ~1e-8: no contrast
)
SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


# Whole-word tokens for these, so prompts in tests count roughly like real CLIP (one token per
# common word) instead of one per character.
WORDS = (
    "a an the of on in at with and photo photograph background beach sunset sea sky studio "
    "table wooden marble city street night forest light soft warm high detail lowres blurry jpeg "
    "artifacts noise watermark text logo signature frame border deformed distorted disfigured "
    "duplicate extra objects floating bad perspective oversaturated cartoon illustration painting"
).split()


def tiny_tokenizer():
    """A real CLIPTokenizer built in memory: every byte CLIP's pre-tokenizer can produce is a
    token (so any prompt tokenizes), plus BPE merges that build each word of WORDS."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(ByteLevel.alphabet()):
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    # built from the end of each word (char + suffix</w>): only the pair before the growing
    # suffix can ever merge, so no word's merges can block another's
    for word in WORDS:
        for i in range(len(word) - 2, -1, -1):
            pair = (word[i], word[i + 1 :] + "</w>")
            if pair not in merges:
                merges.append(pair)
                vocab.setdefault(word[i:] + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_inpaint(folder: Path) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET)
    torch.manual_seed(1)
    vae = AutoencoderKL(**VAE)
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER))
    tokenizer = tiny_tokenizer()
    assert len(tokenizer) <= TEXT_ENCODER["vocab_size"]
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_controlnet(folder: Path) -> Path:
    from diffusers import ControlNetModel

    torch.manual_seed(3)
    controlnet = ControlNetModel(**CONTROLNET)
    # a fresh ControlNet's output convs are zero ("zero convolutions"), so it would change
    # nothing; random ones make depth control visible in the output, as in diffusers' tests
    with torch.no_grad():
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.normal_(0.0, 0.05)
            conv.bias.zero_()
    controlnet.save_pretrained(folder, safe_serialization=True)
    return folder


def build_depth(folder: Path) -> Path:
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(4)
    DPTForDepthEstimation(DPTConfig(**DEPTH)).save_pretrained(folder, safe_serialization=True)
    DPTImageProcessor(
        size={"height": DEPTH["image_size"], "width": DEPTH["image_size"]},
        keep_aspect_ratio=False,  # square resize: the tiny ViT's position grid is fixed
        ensure_multiple_of=DEPTH["patch_size"],
    ).save_pretrained(folder)
    return folder


def build_tiny_models(root: Path) -> dict[str, str]:
    """Build and save all three tiny models under ``root``; returns local folder paths keyed by
    slot, ready for the request fields inpaint_model / controlnet_model / depth_model."""
    root = Path(root)
    return {
        "inpaint": str(build_inpaint(root / "inpaint")),
        "controlnet": str(build_controlnet(root / "controlnet")),
        "depth": str(build_depth(root / "depth")),
    }


SAM_VISION = dict(
    hidden_size=32,
    output_channels=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    mlp_dim=64,
    global_attn_indexes=[1],
    window_size=8,
    num_pos_feats=16,
    initializer_range=0.02,
)
SAM_PROMPT = dict(hidden_size=32)
SAM_DECODER = dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32)


def build_sam(folder: Path) -> Path:
    """A tiny random Segment Anything in transformers' SamModel format, with the standard
    SamProcessor (1024 px, the real preprocessing): the shape of Zigeng/SlimSAM-uniform-77."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    torch.manual_seed(5)
    config = SamConfig(vision_config=SAM_VISION, prompt_encoder_config=SAM_PROMPT, mask_decoder_config=SAM_DECODER)
    SamModel(config).save_pretrained(folder, safe_serialization=True)
    SamProcessor(SamImageProcessor()).save_pretrained(folder)
    return folder


TAESD = dict(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
             num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))


def build_taesd(folder: Path) -> Path:
    """A tiny random TAESD in diffusers' AutoencoderTiny format (madebyollin/taesd's layout:
    4 latent channels, three 2x upsamplings, scaling factor 1), narrower and shallower."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(5)
    AutoencoderTiny(**TAESD).save_pretrained(folder, safe_serialization=True)
    return folder
