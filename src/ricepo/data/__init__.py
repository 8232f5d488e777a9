"""Datasets in one canonical (BEIR) layout: readers, writers, the offline fixture, splits."""
