"""Reading the TensorBoard event files a run writes (without TensorFlow), for tests in every folder."""

import sys
import types


def event_accumulator(log_dir):
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # after the stub above

    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def hparams_of(log_dir) -> tuple[dict, list[str]]:
    """``({hparam: value}, [metric tags])`` of the HParams summaries under ``log_dir``."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = event_accumulator(log_dir).PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    params = {}
    for key, value in start.session_start_info.hparams.items():
        params[key] = value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
    return params, [info.name.tag for info in experiment.experiment.metric_infos]
