# The public face of merkit: every name `import merkit` offers, loaded on first use (lazy_loader.attach_stub reads
# the imports of this file; type checkers and tests/test_architecture.py read them too). __all__ groups the names
# as a notebook meets them.

from ._io import atomic_write_json
from .config import (
    TRAIN_RECIPES,
    ConfigError,
    DataConfig,
    ModelConfig,
    ProtocolConfig,
    RunConfig,
    TrainConfig,
    load_config,
    run_parameters,
    train_config,
    variant_config,
)
from .data.datasets import list_datasets, list_label_maps, problems_table
from .data.flow import FlowConfig, optical_flow, optical_strain
from .data.io import read_clip, read_sample
from .data.preprocess import PreprocessConfig
from .data.synthetic import SynthMEConfig, generate_synthme, write_release
from .evaluation.metrics import (
    bootstrap_ci,
    confusion_matrix,
    fold_mean_scores,
    per_subject_table,
    pooled_scores,
    read_megc_log,
    scores_by,
    summarise,
    write_megc_log,
)
from .evaluation.published import published_results
from .evaluation.splits import (
    Fold,
    fold_seed,
    group_kfold_splits,
    held_out_split,
    list_protocols,
    lodo_splits,
    loso_splits,
    make_splits,
    megc2019_splits,
)
from .explain import (
    AblationOptions,
    Attribution,
    GradCamOptions,
    IntegratedGradientsOptions,
    OcclusionOptions,
    attribute,
    event_positions,
    explain_regions,
    explain_store,
    learned_attention,
    region_scores,
    score_methods,
    summarise_scores,
)
from .models import create_model, list_models, model_summary
from .predict import ModelBundle, Prediction, load_model, predict_clip, save_model
from .prepare import PreparedData, flow_method_for, notebook_dirs, prepare_data
from .report import compare_runs, write_report
from .training.fold import inner_validation_split
from .training.runner import FoldResult, load_fold_model, model_dataset, run_fold, run_protocol
from .training.runs import atomic_write_csv

__all__ = [
    # the run's configuration
    "RunConfig",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "ProtocolConfig",
    "PreprocessConfig",
    "SynthMEConfig",
    "FlowConfig",
    "ConfigError",
    "TRAIN_RECIPES",
    "load_config",
    "run_parameters",
    "train_config",
    "variant_config",
    # the data
    "prepare_data",
    "PreparedData",
    "notebook_dirs",
    "flow_method_for",
    "list_datasets",
    "list_label_maps",
    "problems_table",
    "generate_synthme",
    "write_release",
    "read_clip",
    "read_sample",
    "optical_flow",
    "optical_strain",
    # the folds
    "held_out_split",
    "make_splits",
    "loso_splits",
    "megc2019_splits",
    "lodo_splits",
    "group_kfold_splits",
    "list_protocols",
    "Fold",
    "fold_seed",
    "inner_validation_split",
    # training
    "run_protocol",
    "run_fold",
    "FoldResult",
    "load_fold_model",
    "model_dataset",
    # the models
    "create_model",
    "list_models",
    "model_summary",
    "load_model",
    "save_model",
    "predict_clip",
    "ModelBundle",
    "Prediction",
    # the explanations
    "attribute",
    "IntegratedGradientsOptions",
    "GradCamOptions",
    "OcclusionOptions",
    "AblationOptions",
    "Attribution",
    "learned_attention",
    "explain_store",
    "explain_regions",
    "score_methods",
    "region_scores",
    "summarise_scores",
    "event_positions",
    # the scores and summaries
    "pooled_scores",
    "fold_mean_scores",
    "per_subject_table",
    "confusion_matrix",
    "bootstrap_ci",
    "scores_by",
    "summarise",
    "published_results",
    "write_megc_log",
    "read_megc_log",
    # the files a notebook writes, and the report
    "atomic_write_csv",
    "atomic_write_json",
    "write_report",
    "compare_runs",
]
