"""Training without autograd: Adam, losses, checkpoints, a training loop and a progress line.

Everything works on parameter trees (nested dicts of float64 arrays, as every block's ``init``
returns) and gradients of the same structure (as every block's ``backward`` returns).
"""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .loop import FitResult, fit, plot_curves
from .losses import mse_loss
from .optim import Adam, AdamState, CosineWarmup, clip_grad_norm
from .progress import Progress
from .reparam import Rescaled, RescaledCache, standard_parametrization

__all__ = [
           "Adam",
           "AdamState",
           "Checkpoint",
           "CosineWarmup",
           "FitResult",
           "Progress",
           "Rescaled",
           "RescaledCache",
           "clip_grad_norm",
           "fit",
           "load_checkpoint",
           "mse_loss",
           "plot_curves",
           "save_checkpoint",
           "standard_parametrization",
]
