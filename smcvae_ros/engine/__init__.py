"""Inference backends behind one interface (base.Backend); factory.create_backend selects one."""
from .base import Backend, BackendError, default_model_path, resolve_model
from .factory import create_backend

__all__ = ['Backend', 'BackendError', 'create_backend', 'default_model_path', 'resolve_model']
