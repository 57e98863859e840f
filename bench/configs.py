"""Published model configs the GPU benchmark builds with random weights.

Latency does not depend on weight values, so full-size architectures built from these dicts
time like the real checkpoints without downloading them. Copied from the published
``config.json`` files (keys that only record provenance, such as ``_diffusers_version``,
left out): stable-diffusion-inpainting ``unet/``, ``vae/``, ``text_encoder/``,
``scheduler/``; ``lllyasviel/control_v11f1p_sd15_depth``;
``depth-anything/Depth-Anything-V2-Small-hf``; ``Intel/dpt-large``. ``TINY`` holds the
overrides ``--smoke`` applies so the same code paths run on a CPU in seconds.
"""

SD15_INPAINT_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 9,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

SD15_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

CLIP_VIT_L14_TEXT = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}

SD15_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

CONTROLNET_SD15_DEPTH = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "class_embed_type": None,
    "conditioning_embedding_out_channels": [16, 32, 96, 256],
    "controlnet_conditioning_channel_order": "rgb",
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "projection_class_embeddings_input_dim": None,
    "resnet_time_scale_shift": "default",
    "upcast_attention": False,
    "use_linear_projection": False,
}

DEPTH_ANYTHING_V2_SMALL = {
    "backbone_config": {
        "hidden_size": 384,
        "image_size": 518,
        "model_type": "dinov2",
        "num_attention_heads": 6,
        "out_features": ["stage3", "stage6", "stage9", "stage12"],
        "out_indices": [3, 6, 9, 12],
        "reshape_hidden_states": False,
    },
    "depth_estimation_type": "relative",
    "fusion_hidden_size": 64,
    "head_hidden_size": 32,
    "head_in_index": -1,
    "neck_hidden_sizes": [48, 96, 192, 384],
    "patch_size": 14,
    "reassemble_factors": [4, 2, 1, 0.5],
    "reassemble_hidden_size": 384,
}

DEPTH_ANYTHING_V2_PREPROCESSOR = {
    "do_normalize": True,
    "do_pad": False,
    "do_rescale": True,
    "do_resize": True,
    "ensure_multiple_of": 14,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "keep_aspect_ratio": True,
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"height": 518, "width": 518},
}

DPT_LARGE = {
    "attention_probs_dropout_prob": 0.0,
    "backbone_out_indices": [5, 11, 17, 23],
    "fusion_hidden_size": 256,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 1024,
    "image_size": 384,
    "intermediate_size": 4096,
    "layer_norm_eps": 1e-12,
    "neck_hidden_sizes": [256, 512, 1024, 1024],
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "patch_size": 16,
    "qkv_bias": True,
    "readout_type": "project",
    "reassemble_factors": [4, 2, 1, 0.5],
}

DPT_LARGE_PREPROCESSOR = {
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "ensure_multiple_of": 1,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "keep_aspect_ratio": False,
    "resample": 2,
    "size": {"height": 384, "width": 384},
}

# --smoke: the same architectures shrunk until a CPU runs the whole benchmark in seconds.
TINY = {
    "unet": {"block_out_channels": [32, 64], "layers_per_block": 1, "cross_attention_dim": 32, "attention_head_dim": 4,
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
             "sample_size": 8},
    "controlnet": {"block_out_channels": [32, 64], "layers_per_block": 1, "cross_attention_dim": 32, "attention_head_dim": 4,
                   "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "conditioning_embedding_out_channels": [8, 16, 16, 16]},
    "vae": {"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 64},
    "text_encoder": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
                     "projection_dim": 32, "vocab_size": 1000},
    "depth_anything": {"backbone_config": {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 4,
                                           "out_indices": [1, 2, 3, 4], "out_features": ["stage1", "stage2", "stage3", "stage4"],
                                           "image_size": 56},
                       "reassemble_hidden_size": 32, "neck_hidden_sizes": [8, 8, 16, 32], "fusion_hidden_size": 8,
                       "head_hidden_size": 8},
    "dpt": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 4,
            "backbone_out_indices": [0, 1, 2, 3], "neck_hidden_sizes": [8, 8, 16, 32], "fusion_hidden_size": 8,
            "image_size": 64},
    "depth_size": 56,  # processors' square input edge (multiple of 14 and of 16-ish patches)
}
