"""Inference backends behind one interface (see base.Backend) and backend selection."""
from .base import Backend, BackendError, create_backend, default_model_path

__all__ = ['Backend', 'BackendError', 'create_backend', 'default_model_path']
