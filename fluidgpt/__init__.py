"""fluidgpt: FLUID-GPT particle trajectories (GPT-2) and wall erosion (CNN) from CFD conditions."""

__version__ = "0.1.0"

__all__ = ["__version__"]
