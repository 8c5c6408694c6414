"""Chaining stages into one cached, resumable run (``alignkit run pipeline.yaml``, ``alignkit demo``)."""

from alignkit.pipeline.runner import PipelineSpec, StageSpec, load_pipeline, override_params, parse_overrides, run_pipeline

__all__ = ["PipelineSpec", "StageSpec", "load_pipeline", "override_params", "parse_overrides", "run_pipeline"]
