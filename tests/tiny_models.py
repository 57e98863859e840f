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


# The prompt assistant's tiny language model: Qwen2's architecture and its byte-level BPE, with
# whole-word tokens for the words a background description is made of.
PROMPT_WORDS = (
    "a an the of on in at with and photo background beach sunset sea sky studio table wooden marble city street "
    "night forest light soft warm sand wave golden hour bokeh lens depth field shallow morning window kitchen "
    "counter stone concrete wall floor linen fabric paper white grey blue green plant leaf shadow glow sunlit "
    "bright dark moody matte glossy surface texture blurred distant horizon ocean water reflection camera angle "
    "low eye level lighting diffused backdrop seamless cafe terrace garden desert dune snow mountain lake"
).split()
PROMPT_LM = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True, initializer_range=0.5)
# ChatML, as Qwen2.5's template writes a chat that has a system message
CHAT_TEMPLATE = ("{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                 "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                 "{%- endif %}")


def tiny_chat_tokenizer():
    """A Qwen2 tokenizer built in memory with the ``tokenizers`` library: every byte is a token
    (any text tokenizes), merges build each word of PROMPT_WORDS with its leading space, and
    Qwen's chat tokens and template."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab = {char: i for i, char in enumerate(sorted(ByteLevel.alphabet()))}
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(PROMPT_WORDS):
        spelled = "Ġ" + word  # byte-level BPE writes the leading space as Ġ
        for end in range(2, len(spelled) + 1):
            if (spelled[:end - 1], spelled[end - 1]) not in merges:
                merges.append((spelled[:end - 1], spelled[end - 1]))
                vocab.setdefault(spelled[:end], len(vocab))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_prompt_lm(folder: Path) -> Path:
    """A tiny random Qwen2ForCausalLM with its tokenizer and chat template, saved with
    save_pretrained as Qwen/Qwen2.5-0.5B-Instruct's folder is laid out. The embeddings of every
    token that is not a whole word are shrunk (they are tied to the output layer), so the random
    model answers in words, which the deny-list tests need; sampling settings in its
    generation_config.json, as Qwen's, which greedy decoding must override."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = tiny_chat_tokenizer()
    torch.manual_seed(6)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                                         pad_token_id=tokenizer.pad_token_id, **PROMPT_LM))
    words = set(tokenizer.convert_tokens_to_ids(["Ġ" + word for word in PROMPT_WORDS]))
    with torch.no_grad():
        for token in range(len(tokenizer)):
            if token not in words:
                model.model.embed_tokens.weight[token] *= 0.05
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


# LCM-LoRA's target modules (diffusers' train_lcm_distill_lora_sd_wds.py): the attention and
# feed-forward projections, the transformers' in and out projections, and the resnets'
# convolutions and time projections
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]
LORA_RANK = 4
LORA_ALPHA = 8  # scaling alpha / rank = 2: a file's alphas must be read, not assumed


def lora_unet(unet_config: dict | None = None, seed: int = 6, rank: int = LORA_RANK, alpha: int = LORA_ALPHA,
              device: str = "cpu"):
    """A UNet of ``unet_config``'s architecture (the tiny one by default) with a random LoRA
    adapter made by peft (both of its matrices random: peft starts B at zero, a LoRA that
    changes nothing). On the ``meta`` device it holds only the shapes (a full-size one costs
    nothing)."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**(unet_config or UNET))
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=LORA_TARGETS, init_lora_weights=False))
    if device != "meta":
        with torch.no_grad():
            for name, parameter in unet.named_parameters():
                if "lora_" in name:
                    parameter.normal_(0.0, 0.5 / rank)
    return unet


def save_lora(unet, folder: Path, weight_name: str, layout: str, dtype=None, seed: int = 7) -> Path:
    """The adapter of ``unet`` (``lora_unet``) saved as a LoRA file, as the real files are laid
    out: ``diffusers`` (``StableDiffusionLoraLoaderMixin.save_lora_weights``: ``unet.<module>.lora_A.weight``
    keys and the adapter's config as metadata, what diffusers' training scripts save) or ``kohya``
    (``lora_unet_<module>.lora_down.weight`` with ``.alpha`` keys: the layout of
    latent-consistency/lcm-lora-sdv1-5's file, converted with diffusers' own
    ``convert_state_dict_to_kohya``), in ``dtype`` (the adapter's own by default; the real files
    are fp16). An adapter on the meta device is saved with random values (``seed``). Returns the file."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from diffusers.utils import convert_state_dict_to_kohya
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    config = unet.peft_config["default"]
    generator = torch.Generator().manual_seed(seed)

    def value(tensor):
        if tensor.is_meta:
            tensor = torch.randn(tensor.shape, generator=generator) * (0.5 / config.r)
        return tensor.detach().to(dtype or tensor.dtype).contiguous()

    state = {key: value(tensor) for key, tensor in get_peft_model_state_dict(unet).items()}
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "diffusers":  # the adapter's config (its alpha) in the file's metadata, as diffusers saves it
        StableDiffusionLoraLoaderMixin.save_lora_weights(folder, unet_lora_layers=state, weight_name=weight_name,
                                                         safe_serialization=True,
                                                         unet_lora_adapter_metadata=config.to_dict())
    elif layout == "kohya":
        kohya = convert_state_dict_to_kohya({f"unet.{key}": tensor for key, tensor in state.items()})
        for key in [k for k in kohya if k.endswith(".alpha")]:
            kohya[key] = torch.tensor(float(config.lora_alpha))  # the converter writes the rank
        save_file(kohya, folder / weight_name)
    else:
        raise ValueError(f"unknown LoRA layout {layout!r}")
    return folder / weight_name


def install_in_hub_cache(cache: Path, repo: str, files: dict[str, Path], revision: str = "0" * 40) -> Path:
    """Put ``files`` (name in the repository -> file here) where the Hugging Face cache keeps
    repository ``repo``'s snapshot ``revision`` (``models--ORG--NAME/snapshots/REV``, ``refs/main``
    naming it), so the product finds them as it would find a download. Returns the snapshot."""
    import shutil

    root = Path(cache) / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copyfile(source, snapshot / name)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return snapshot


HUB_REVISION = "1234567890abcdef1234567890abcdef12345678"
# LCM-LoRA's file has kohya's keys with alphas (lora_unet_up_blocks_2_attentions_0_proj_in.lora_up.weight);
# the other two recipes' files are made one in each layout diffusers reads, so both are covered
LORA_LAYOUTS = {"latent-consistency/lcm-lora-sdv1-5": "kohya", "ByteDance/Hyper-SD": "kohya",
                "h1t/TCD-SD15-LoRA": "diffusers"}


def build_lora_cache(cache: Path, unet, work: Path) -> Path:
    """A Hugging Face cache in ``cache`` holding each fast-mode recipe's LoRA file under the
    recipe's id and file name: the adapter of ``unet`` (``lora_unet``) in the recipe's layout
    (``LORA_LAYOUTS``), and beside Hyper-SD's one file another, as its repository holds many."""
    from core.engine.recipes import RECIPES

    for lora, recipe in RECIPES.items():
        files = {recipe.weight_name: save_lora(unet, work / lora.replace("/", "--"), recipe.weight_name,
                                               LORA_LAYOUTS[lora])}
        if lora == "ByteDance/Hyper-SD":
            files["Hyper-SD15-8steps-lora.safetensors"] = save_lora(unet, work / "other", "8.safetensors", "diffusers")
        install_in_hub_cache(cache, lora, files, HUB_REVISION)
    return cache


TAESD = dict(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
             num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))


def build_taesd(folder: Path) -> Path:
    """A tiny random TAESD in diffusers' AutoencoderTiny format (madebyollin/taesd's layout:
    4 latent channels, three 2x upsamplings, scaling factor 1), narrower and shallower."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(5)
    AutoencoderTiny(**TAESD).save_pretrained(folder, safe_serialization=True)
    return folder
