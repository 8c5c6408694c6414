"""alignkit: align language models to be helpful, honest and harmless through data.

The package is organised by stage of the alignment loop (see docs/architecture.md):
``data`` (records, IO, chat templates), ``models`` (loading, tiny models, log-probs),
``train`` (one training loop and its objectives), ``sandbox`` (a small world with known truth),
``feedback`` (collection and quality control), ``evaluate`` (ratings, HHH metrics, reports) and
``cli`` (the ``alignkit`` command).
"""

__version__ = "0.1.0"
