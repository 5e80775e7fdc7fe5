"""The charged N-body benchmark of the EGNN paper: data generator, dataset loader, command line.

* :mod:`~geomp_ref.nbody.generate`: :func:`write_dataset` writes the published generator's files
  bit for bit, vectorised over simulations;
* :mod:`~geomp_ref.nbody.simulate`: the simulation itself;
* :mod:`~geomp_ref.nbody.dataset`: :class:`NBodyDataset` (published loader semantics) and
  batching into graphs;
* :mod:`~geomp_ref.nbody.cli`: ``geomp-ref nbody generate`` and ``geomp-ref nbody train``.
"""

from .dataset import Batch, NBodyDataset, complete_edges, default_frames
from .generate import GeneratorConfig, dataset_suffix, file_name, generate, write_dataset
from .simulate import SimulationError

__all__ = [
           "Batch",
           "GeneratorConfig",
           "NBodyDataset",
           "SimulationError",
           "complete_edges",
           "dataset_suffix",
           "default_frames",
           "file_name",
           "generate",
           "write_dataset",
]
