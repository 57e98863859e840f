"""Models: the loaded-model registry, where weights come from (hub, rembg), which are here, the device."""
