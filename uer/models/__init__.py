"""Models: embedding + encoder (a :class:`Backbone`) (+ decoder) + target, each chosen by name."""

from uer.models.decoders import DECODERS
from uer.models.embeddings import EMBEDDINGS
from uer.models.encoders import ENCODERS
from uer.models import attention_encoders, cnn_encoders, rnn_encoders  # noqa: F401, I001  (they register encoders)
from uer.models.model import Backbone, ModelOutput, PretrainModel, Seq2seqModel, build_backbone, build_model
from uer.models.targets import TARGETS, ModelDims

__all__ = [
    "DECODERS",
    "EMBEDDINGS",
    "ENCODERS",
    "TARGETS",
    "Backbone",
    "ModelDims",
    "ModelOutput",
    "PretrainModel",
    "Seq2seqModel",
    "build_backbone",
    "build_model",
]
