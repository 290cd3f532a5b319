"""Models: the catalog, weights (hub | folder | random | tiny), tokenizers, inputs, pipelines, ControlNet, LoRA."""
