"""RICE-PO reproduction harness: data, retrieval, agent rollouts, credit assignment, training, report."""

__version__ = "0.1.0"
