"""DITTO controls: differentiable features of the generated mel, targets, losses and metrics.

    from dittomusic.control import get_control, intensity_preset
    ctrl = get_control("intensity", target=intensity_preset("tanh-rise", 512, -35, -15))
    ctrl.loss(x0)            # [B], differentiable w.r.t. the mel x0 [B, 160, 512]
    ctrl.metric(audio, sr)   # MSE in dB^2 measured on the vocoded waveform

Layout: base.py (the Control contract, registry, MultiControl, BatchedControl), spec.py
(TaskSpec), tasks/ (one module per task: its Control and TaskSpec), features.py, targets.py
(target builders), masks.py (painting masks), stitching.py, optimize.py, defaults.py, plots.py, and
methods/ (one module per method family).
"""

from .base import BatchedControl, Control, MultiControl, available_controls, get_control, register_control
from .features import (
    PITCH_CLASSES,
    chroma_energy,
    chroma_from_audio,
    chroma_weights,
    frame_energy_db,
    intensity_curve,
    intensity_curve_from_audio,
    log_chroma,
    mfcc,
    pitch_classes_from_audio,
    savgol_smooth,
    self_similarity,
    self_similarity_from_audio,
    sg_window,
    spectral_flux,
    spectral_flux_seam_ratio,
)
from .masks import PaintMasks, inpaint_masks, loop_masks, outpaint_masks
from .spec import TaskOption, TaskSpec, all_tasks, get_task, register_task, task_names
from .stitching import Stitched, stitch, stitch_audio
from .targets import (
    INTENSITY_PRESETS,
    intensity_from_audio,
    intensity_from_csv,
    intensity_preset,
    melody_from_audio,
    melody_from_midi,
    melody_from_string,
    parse_note,
    structure_from_audio,
    structure_from_pattern,
)
from .tasks.intensity import IntensityControl
from .tasks.melody import MelodyControl
from .tasks.painting import PaintControl
from .tasks.structure import StructureControl

__all__ = [
    "PITCH_CLASSES", "chroma_energy", "chroma_from_audio", "chroma_weights", "frame_energy_db", "intensity_curve",
    "intensity_curve_from_audio", "log_chroma", "mfcc", "pitch_classes_from_audio", "savgol_smooth",
    "self_similarity", "self_similarity_from_audio", "sg_window", "spectral_flux", "spectral_flux_seam_ratio",
    "BatchedControl", "Control", "IntensityControl", "MelodyControl", "MultiControl", "PaintControl", "StructureControl",
    "available_controls", "get_control", "register_control",
    "TaskOption", "TaskSpec", "all_tasks", "get_task", "register_task", "task_names",
    "INTENSITY_PRESETS", "PaintMasks", "Stitched", "inpaint_masks", "intensity_from_audio", "intensity_from_csv",
    "intensity_preset", "loop_masks", "melody_from_audio", "melody_from_midi", "melody_from_string",
    "outpaint_masks", "parse_note", "stitch", "stitch_audio", "structure_from_audio", "structure_from_pattern",
]
