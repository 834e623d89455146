"""Validation and conformance harness for NVIDIA Dynamo deployment recipes."""

__version__ = "0.1.0"
