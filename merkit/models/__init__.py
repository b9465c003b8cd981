"""Models by name: MERANet, its ablations and the baselines it is compared with.

    from merkit.models import create_model, list_models
    model = create_model("meranet_small", num_classes=3, attention="channel")
    model.input_spec        # InputSpec(kind='clip', channels=1, frames=16, size=32)
    logits = model(clip)    # clip (B, C, T, H, W) -> (B, 3)
    model.attention_maps(clip, upsample=True)   # MERANet family: list[AttentionMaps]

Importing this package registers every model (MERANet family first, then the baselines).
See docs/models.md for the table of models and which MERANet choices are assumptions.
"""

# Registration order is listing order: the MERANet family first, then the baselines.
from merkit.models import meranet as _meranet  # noqa: F401, I001  (registers the MERANet family)
from merkit.models import baselines as _baselines  # noqa: F401, I001  (registers the baselines)
from merkit.models.baselines import MicroExpSTCNN, OffApexNet, ResNet3d, STSTNet
from merkit.models.meranet import MERANet
from merkit.models.registry import create_model, list_models, model_entry, register_model
from merkit.models.specs import AttentionMaps, InputShapeError, InputSpec
from merkit.models.summary import count_parameters, model_summary, models_markdown, models_table

__all__ = [
    "create_model",
    "list_models",
    "model_entry",
    "register_model",
    "model_summary",
    "models_table",
    "models_markdown",
    "count_parameters",
    "InputSpec",
    "InputShapeError",
    "AttentionMaps",
    "MERANet",
    "MicroExpSTCNN",
    "ResNet3d",
    "STSTNet",
    "OffApexNet",
]
