"""The AI background engine: conditioning, the denoising loop, the step (eager, CUDA graph, compiled), buckets, decode, depth and prompts."""
