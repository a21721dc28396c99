"""Sources of fluidgpt data: the OpenFOAM elbow-erosion sweep (needs OpenFOAM installed).

``build_sweep(recipe, output, workers=2)`` runs the sweep of a recipe YAML
(datasets/elbow_erosion/recipe.yaml) and writes the canonical dataset; ``paper_style_variant``
replicates a dataset under inert labels without new simulations.
"""

from .foam_cases import OpenFOAMNotFoundError
from .openfoam_sweep import VARIANTS, build_sweep, plan_cases
from .recipe import Recipe, load_recipe
from .variants import paper_style_variant

__all__ = ["build_sweep", "plan_cases", "VARIANTS", "Recipe", "load_recipe",
           "paper_style_variant", "OpenFOAMNotFoundError"]
