"""Trainer: config validation, YOLOv8's optimizer recipe, EMA, state round trips, and on tiny
chess data: learning, determinism, bit-exact resume in a fresh trainer, callbacks."""

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from artifactkit.detector import optim
from artifactkit.detector.config import TrainConfig
from artifactkit.detector.state import capture_rng, optimizer_state_from_plain, restore_rng
from artifactkit.errors import InvalidInput

# ---------------------------------------------------------------- helpers


def split_tensors(value, tensors):
    """Replace tensors by {"__tensor__": i} and collect them: the shape a checkpoint store keeps."""
    if isinstance(value, torch.Tensor):
        tensors.append(value.clone())
        return {"__tensor__": len(tensors) - 1}
    if isinstance(value, dict):
        return {key: split_tensors(item, tensors) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [split_tensors(item, tensors) for item in value]
    return value


def join_tensors(value, tensors):
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        return {key: join_tensors(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return [join_tensors(item, tensors) for item in value]
    return value


def json_round_trip(state):
    """What a checkpoint store gives back: tensors intact, the rest through JSON."""
    tensors = []
    text = json.dumps(split_tensors(state, tensors))
    return join_tensors(json.loads(text), tensors)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 2, 1, bias=False)

    def forward(self, x):
        return self.head(self.bn(self.conv(x)))


# ---------------------------------------------------------------- config


def test_config_defaults_follow_yolov8():
    config = TrainConfig(data="d")
    assert (config.model, config.epochs, config.batch, config.imgsz) == ("n", 10, 16, 640)
    assert config.val_splits == ("val",)
    assert TrainConfig(**json.loads(json.dumps(config.model_dump(mode="json")))) == config


@pytest.mark.parametrize(
    "values, key",
    [
        ({"epochs": 0}, "epochs"),
        ({"model": "x"}, "model"),
        ({"device": "tpu"}, "device"),
        ({"optimizer": "Adam"}, "optimizer"),
        ({"fliplr": 2.0}, "fliplr"),
        ({"batch": "many"}, "batch"),
        ({"val_splits": []}, "val_splits"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_config_errors_name_the_key(values, key):
    with pytest.raises(InvalidInput, match=f"'{key}'"):
        TrainConfig(data="d", **values)


def test_config_requires_data_and_is_frozen():
    with pytest.raises(InvalidInput, match="'data' is required"):
        TrainConfig()
    config = TrainConfig(data="d", val_splits="val-heldout")
    assert config.val_splits == ("val-heldout",)
    with pytest.raises(Exception):
        config.epochs = 3
    assert config.replace(epochs=3).epochs == 3
    with pytest.raises(InvalidInput, match="'epochs'"):
        config.replace(epochs=-1)


# ---------------------------------------------------------------- optimizer recipe


def test_auto_optimizer_follows_yolov8_rule():
    short = optim.choose_optimizer(TrainConfig(data="d", epochs=10), nc=12, n_train=800)
    assert short == optim.OptimizerChoice("AdamW", 0.00125, 0.9, 0.0, nbs=16)  # the short-run departure
    long = optim.choose_optimizer(TrainConfig(data="d", epochs=1000), nc=12, n_train=64_000)
    assert (long.name, long.lr0, long.momentum, long.nbs) == ("SGD", 0.01, 0.9, 64)
    manual = optim.choose_optimizer(TrainConfig(data="d", optimizer="SGD", lr0=0.02), nc=12, n_train=800)
    assert (manual.name, manual.lr0, manual.momentum, manual.warmup_bias_lr, manual.nbs) == (
        "SGD",
        0.02,
        0.937,
        0.1,
        64,
    )
    pinned = optim.choose_optimizer(TrainConfig(data="d", epochs=10, nbs=64), nc=12, n_train=800)
    assert pinned == optim.OptimizerChoice("AdamW", 0.000625, 0.9, 0.0, nbs=64)  # Ultralytics' exact recipe
    # a checkpoint written before the field existed ran with YOLOv8's nominal batch
    assert optim.OptimizerChoice(**{"name": "AdamW", "lr0": 1e-3, "momentum": 0.9, "warmup_bias_lr": 0.0}).nbs == 64


def test_close_mosaic_default_leaves_a_short_run_mosaic_epochs():
    """YOLOv8's close_mosaic=10 turns mosaic off for the whole of a 10-epoch run; the default is
    10 but at most 30 % of the run (rounded up). A value given is kept as it is."""
    off = {epochs: TrainConfig(data="d", epochs=epochs).mosaic_off_epochs() for epochs in (1, 2, 10, 33, 34, 300)}
    assert off == {1: 1, 2: 1, 10: 3, 33: 10, 34: 10, 300: 10}
    assert TrainConfig(data="d", epochs=10, close_mosaic=0).mosaic_off_epochs() == 0
    assert TrainConfig(data="d", epochs=10, close_mosaic=10).mosaic_off_epochs() == 10


def test_accumulation_and_weight_decay_target_a_nominal_batch_of_64():
    assert [optim.accumulation_steps(b, 64) for b in (1, 16, 24, 64, 128)] == [64, 4, 3, 1, 1]
    assert [optim.accumulation_steps(b, 16) for b in (1, 8, 16, 64)] == [16, 2, 1, 1]
    config = TrainConfig(data="d", batch=24, weight_decay=5e-4)
    assert optim.scaled_weight_decay(config, 64) == pytest.approx(5e-4 * 24 * 3 / 64)


def test_three_parameter_groups():
    model = TinyNet()
    choice = optim.OptimizerChoice("SGD", 0.01, 0.937, 0.1)
    optimizer = optim.build_optimizer(model, choice, weight_decay=1e-3)
    biases, weights, norms = optimizer.param_groups
    assert {id(p) for p in biases["params"]} == {id(model.conv.bias), id(model.bn.bias)}
    assert {id(p) for p in weights["params"]} == {id(model.conv.weight), id(model.head.weight)}
    assert {id(p) for p in norms["params"]} == {id(model.bn.weight)}
    assert (biases["weight_decay"], weights["weight_decay"], norms["weight_decay"]) == (0.0, 1e-3, 0.0)
    assert biases["nesterov"] and isinstance(optimizer, torch.optim.SGD)
    adamw = optim.build_optimizer(model, optim.OptimizerChoice("AdamW", 1e-3, 0.9, 0.0), 1e-3)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["betas"] == (0.9, 0.999)


def test_lr_schedules_fall_from_one_to_lrf():
    for cosine in (False, True):
        assert optim.lr_factor(0, 10, 0.01, cosine) == pytest.approx(1.0)
        assert optim.lr_factor(10, 10, 0.01, cosine) == pytest.approx(0.01)
        values = [optim.lr_factor(e, 10, 0.01, cosine) for e in range(11)]
        assert values == sorted(values, reverse=True)
    assert optim.lr_factor(5, 10, 0.01, False) == pytest.approx(0.505)


def test_warmup_interpolates_lr_momentum_and_accumulation():
    config = TrainConfig(data="d", batch=16, warmup_momentum=0.8)
    choice = optim.OptimizerChoice("SGD", 0.01, 0.937, 0.1)
    optimizer = optim.build_optimizer(TinyNet(), choice, 5e-4)
    optim.build_scheduler(optimizer, lambda epoch: 1.0)
    assert optim.warmup_iterations(config, 10) == 100  # at least 100
    assert optim.warmup_iterations(config, 50) == 150
    assert optim.warmup_iterations(config.replace(warmup_epochs=0), 50) == -1
    assert optim.apply_warmup(optimizer, 0, 100, 1.0, choice, config) == 1
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.0, 0.0]
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.8)
    assert optim.apply_warmup(optimizer, 100, 100, 0.5, choice, config) == 4
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.005] * 3)
    assert optimizer.param_groups[1]["momentum"] == pytest.approx(0.937)
    assert all(type(g["lr"]) is float for g in optimizer.param_groups)


def test_ema_decay_ramp_update_and_state():
    model = TinyNet()
    ema = optim.ModelEMA(model)
    assert ema.decay() == 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)  # decay after one update is ~5e-4: the EMA almost copies the model
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    expected = model.conv.weight * (1 - d) + (model.conv.weight - 1) * d
    assert torch.allclose(ema.ema.conv.weight, expected)
    assert not any(p.requires_grad for p in ema.ema.parameters())
    restored = optim.ModelEMA(TinyNet())
    restored.load_state_dict(json_round_trip(ema.state_dict()))
    assert restored.updates == 1 and torch.equal(restored.ema.conv.weight, ema.ema.conv.weight)


# ---------------------------------------------------------------- state round trips


def test_rng_capture_restore_survives_json():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = json_round_trip(capture_rng())
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_optimizer_state_survives_json(name):
    def run(model, optimizer, steps):
        for _ in range(steps):
            model(torch.ones(1, 3, 5, 5)).sum().backward()
            optimizer.step()
            optimizer.zero_grad()

    choice = optim.OptimizerChoice(name, 0.01, 0.9, 0.0)
    torch.manual_seed(0)
    model = TinyNet()
    optimizer = optim.build_optimizer(model, choice, 1e-3)
    run(model, optimizer, 2)
    saved_model, saved_opt = json_round_trip(model.state_dict()), json_round_trip(optimizer.state_dict())
    run(model, optimizer, 2)

    clone = TinyNet()
    clone.load_state_dict(saved_model)
    clone_opt = optim.build_optimizer(clone, choice, 1e-3)
    clone_opt.load_state_dict(optimizer_state_from_plain(saved_opt))
    run(clone, clone_opt, 2)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), clone.state_dict().values()))


# ---------------------------------------------------------------- training on tiny chess data

IMGSZ = 128


@pytest.fixture(scope="module")
def chess_data(tmp_path_factory):
    from artifactkit.detector.chess import generate

    return generate(tmp_path_factory.mktemp("chess"), n_train=16, n_val=8, n_heldout=8, imgsz=IMGSZ)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    # Trainer(threads=...) sets the process-wide count; other test files must not inherit it.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_config(data, **changes):
    # batch 4 over 16 images: 4 iterations an epoch, and warm-up ramps accumulation from 1 to 2
    # within the first epochs, so a resume must restore the accumulation phase too. One thread:
    # tiny tensors gain nothing from more, and on a busy machine OpenMP barriers stall.
    values = dict(data=str(data), imgsz=IMGSZ, batch=4, epochs=3, workers=0, threads=1, seed=3)
    return TrainConfig(**{**values, **changes})


def weights_of(trainer):
    state = trainer.state_dict()
    return {"model": state["model"], "ema": state["ema"]["model"], "optimizer": state["optimizer"]["state"]}


def assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_same_tensors(a[key], b[key])
        else:
            assert torch.equal(a[key], b[key]), key


class Recorder:
    def __init__(self):
        self.calls = []

    def on_train_start(self, trainer):
        self.calls.append(("start", trainer))

    def on_validation(self, trainer, epoch, result):
        self.calls.append(("validation", epoch, result))

    def on_epoch_end(self, trainer, epoch, metrics):
        self.calls.append(("epoch", epoch, dict(metrics)))

    def on_train_end(self, trainer, metrics):
        self.calls.append(("end", dict(metrics)))


def test_training_lowers_the_loss_and_reports_metrics(chess_data):
    from artifactkit.detector.train import Trainer

    recorder = Recorder()
    # A higher lr than 'auto' picks: warm-up keeps lr tiny for the 16 iterations of this test.
    config = tiny_config(
        chess_data, epochs=4, val_splits=["val", "val-heldout"], optimizer="AdamW", lr0=0.01, warmup_bias_lr=0.0
    )
    trainer = Trainer(config, [recorder])
    final = trainer.fit()
    epochs = [call[2] for call in recorder.calls if call[0] == "epoch"]
    assert [metrics["epoch"] for metrics in epochs] == [1, 2, 3, 4]
    # At 128 px the pieces are ~6 px and few anchors fall inside them, so box/DFL losses stay
    # near 0 this early; the class loss carries the signal (the run is deterministic).
    cls_losses = [metrics["train/cls_loss"] for metrics in epochs]
    assert cls_losses == sorted(cls_losses, reverse=True) and cls_losses[-1] < 0.97 * cls_losses[0]
    last = epochs[-1]
    expected = {
        "epoch",
        "train/box_loss",
        "train/cls_loss",
        "train/dfl_loss",
        "metrics/precision",
        "metrics/recall",
        "metrics/mAP50",
        "metrics/mAP50-95",
        "val-heldout/mAP50",
        "val-heldout/mAP50-95",
        "lr/pg0",
        "lr/pg1",
        "lr/pg2",
        "time/epoch_s",
        "speed/train_img_s",
        "fitness",
    }
    assert expected <= set(last) and final == last
    assert all(isinstance(value, (int, float)) for value in last.values())
    assert last["fitness"] == pytest.approx(0.1 * last["metrics/mAP50"] + 0.9 * last["metrics/mAP50-95"])
    assert trainer.epoch == 4 and trainer.step == 16 and trainer.ema.updates > 0


def test_callbacks_get_the_documented_arguments(chess_data):
    from artifactkit.detector.train import Trainer

    recorder = Recorder()
    trainer = Trainer(tiny_config(chess_data, epochs=1, val_splits=["val", "val-heldout"]), [recorder, object()])
    trainer.fit()
    kinds = [call[0] for call in recorder.calls]
    assert kinds == ["start", "validation", "validation", "epoch", "end"]
    assert recorder.calls[0][1] is trainer
    _, epoch, result = recorder.calls[1]
    assert epoch == 1 and result.split == "val" and recorder.calls[2][2].split == "val-heldout"
    assert len(result.images) == 8 and result.names == trainer.data.names
    image = result.images[0]
    assert image.im_id and image.path.endswith(image.im_id + ".jpg") or image.path
    assert len(image.ori_shape) == 2 and image.pred.shape[1] == 6
    assert image.gt_boxes.shape == (len(image.gt_cls), 4) and len(image.gt_cls) > 0
    assert (image.gt_boxes[:, 2:] <= torch.tensor(image.ori_shape[::-1])).all()
    assert recorder.calls[-1][1] == recorder.calls[-2][2]


def test_callback_errors_propagate(chess_data):
    from artifactkit.detector.train import Trainer

    class Boom:
        def on_epoch_end(self, trainer, epoch, metrics):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        Trainer(tiny_config(chess_data, epochs=1), [Boom()]).fit()


def test_same_seed_gives_identical_weights(chess_data):
    from artifactkit.detector.train import Trainer

    runs = []
    for _ in range(2):
        trainer = Trainer(tiny_config(chess_data, epochs=2))
        trainer.fit()
        runs.append(weights_of(trainer))
    assert_same_tensors(*runs)
    first, other = (Trainer(tiny_config(chess_data, seed=seed)).model.state_dict() for seed in (3, 4))
    assert not all(torch.equal(first[key], other[key]) for key in first)


RESUME_SCRIPT = """
import json, sys, torch
from artifactkit.detector.config import TrainConfig
from artifactkit.detector.train import Trainer
sys.path.insert(0, sys.argv[2])
from test_train import join_tensors

folder = sys.argv[1]
tensors = torch.load(folder + "/tensors.pt", weights_only=True)
with open(folder + "/state.json") as f:
    state = join_tensors(json.load(f), tensors)
trainer = Trainer(TrainConfig(**state["config"]))
trainer.load_state_dict(state)
trainer.fit()
final = trainer.state_dict()
torch.save({"model": final["model"], "ema": final["ema"]["model"], "optimizer": final["optimizer"]["state"],
            "step": final["step"], "updates": final["ema"]["updates"]}, folder + "/final.pt")
"""


class SaveAfter:
    """Saves the trainer's state after one epoch: tensors apart, everything else as JSON."""

    def __init__(self, epoch, folder):
        self.epoch, self.folder = epoch, folder

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.epoch:
            tensors = []
            skeleton = split_tensors(trainer.state_dict(), tensors)
            torch.save(tensors, self.folder / "tensors.pt")
            (self.folder / "state.json").write_text(json.dumps(skeleton))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_in_a_fresh_process_is_bit_exact(chess_data, tmp_path, workers):
    import subprocess
    import sys
    from pathlib import Path

    from artifactkit.detector.train import Trainer

    trainer = Trainer(tiny_config(chess_data, workers=workers), [SaveAfter(2, tmp_path)])
    trainer.fit()
    here = str(Path(__file__).parent)
    subprocess.run([sys.executable, "-c", RESUME_SCRIPT, str(tmp_path), here], check=True)
    resumed = torch.load(tmp_path / "final.pt", weights_only=True)
    assert (resumed["step"], resumed["updates"]) == (trainer.step, trainer.ema.updates)
    assert_same_tensors({k: resumed[k] for k in ("model", "ema", "optimizer")}, weights_of(trainer))


def test_extend_a_finished_run_and_evaluate_saved_weights(chess_data):
    from artifactkit.detector.train import Trainer
    from artifactkit.detector.validation import Evaluator, build_model

    first = Trainer(tiny_config(chess_data, epochs=1))
    first.fit()
    state = json_round_trip(first.state_dict())

    # `val --weights`: a model from saved weights, scored without a Trainer, as the trainer does
    model = build_model(state["ema"]["model"], nc=len(first.data.names), scale="n")
    evaluator = Evaluator(first.data, imgsz=IMGSZ, batch=8, workers=0, device=torch.device("cpu"))
    metrics, result = evaluator.evaluate(model, "val-heldout")
    assert metrics == first.validate("val-heldout")[0] and len(result.images) == 8

    resumed = Trainer(TrainConfig(**state["config"]))
    resumed.load_state_dict(state)
    assert resumed.fit()["epoch"] == 1  # nothing left to train: reports the loaded weights as they are
    ended_at = [group["lr"] for group in resumed.optimizer.param_groups]
    resumed.set_epochs(2)
    # extending does not restart the schedule: a finished run goes on at the lr it ended with
    assert [group["lr"] for group in resumed.optimizer.param_groups] == ended_at
    assert "the schedule does not restart" in resumed.schedule_note
    assert resumed.fit()["epoch"] == 2 and resumed.config.epochs == 2
    assert [group["lr"] for group in resumed.optimizer.param_groups] == pytest.approx(ended_at)
    with pytest.raises(InvalidInput, match="'epochs'"):
        resumed.set_epochs(1)


def test_unknown_validation_split_is_named(chess_data):
    from artifactkit.detector.train import Trainer

    with pytest.raises(InvalidInput, match="'val_splits'.*'test'"):
        Trainer(tiny_config(chess_data, val_splits=["val", "test"]))
    with pytest.raises(InvalidInput, match="lacks"):
        Trainer(tiny_config(chess_data)).load_state_dict({"model": {}})


def test_state_dict_holds_the_live_tensors_and_the_saver_copies_them_once(chess_data, tmp_path):
    """No copy on the device: the checkpoint's one CPU copy (on the training thread) is the only one."""
    import artifactkit
    from artifactkit import checkpoint
    from artifactkit.detector.train import Trainer

    trainer = Trainer(tiny_config(chess_data, epochs=1))
    state = trainer.state_dict()
    name, weight = next(iter(trainer.model.state_dict().items()))
    assert state["model"][name].data_ptr() == weight.data_ptr()
    saver = checkpoint.BackgroundSaver(artifactkit.open_store(str(tmp_path / "s")), "m")
    saver.save(state)
    expected = weight.clone()
    with torch.no_grad():
        weight.add_(1)  # training goes on while the save is in flight
    saver.close()
    assert torch.equal(checkpoint.load(artifactkit.open_store(str(tmp_path / "s")), "m")["model"][name], expected)


def test_config_rounds_imgsz_to_the_stride_and_reads_ultralytics_devices(monkeypatch):
    assert [TrainConfig(data="d", imgsz=size).imgsz for size in (32, 100, 640, 641)] == [32, 128, 640, 672]
    assert TrainConfig(data="d", device="0").device == TrainConfig(data="d", device=0).device == "cuda:0"
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(InvalidInput, match=r"'device'.*torchrun --nproc-per-node 2"):
        TrainConfig(data="d", device="0,1")
    monkeypatch.setenv("LOCAL_RANK", "1")  # under torchrun each process takes its own GPU
    assert TrainConfig(data="d", device="0,1").device == "cuda"


def test_set_parses_values_with_the_keys_types():
    from artifactkit.detector.config import check_options, parse_setting

    assert parse_setting("lr0=0.002") == ("lr0", 0.002)
    assert parse_setting("nbs=none") == ("nbs", None) and parse_setting("mosaic=0") == ("mosaic", 0.0)
    assert parse_setting("cos_lr=true") == ("cos_lr", True)
    assert parse_setting("val_splits=val,val-heldout") == ("val_splits", ("val", "val-heldout"))
    with pytest.raises(InvalidInput, match="--set lr0: .*number.*'fast'"):
        parse_setting("lr0=fast")
    with pytest.raises(InvalidInput, match="--set lr: unknown train config key"):
        parse_setting("lr=0.1")
    with pytest.raises(InvalidInput, match="expected KEY=VALUE"):
        parse_setting("lr0")
    with pytest.raises(InvalidInput, match=r"^--epochs: .*greater than or equal to 1 \(got 0\); --set mosaic: "):
        check_options({"epochs": 0, "mosaic": 2.0}, {"epochs": "--epochs", "mosaic": "--set mosaic"})


def test_early_stopping_ends_the_run_after_patience_epochs(chess_data):
    from artifactkit.detector.train import Trainer

    recorder = Recorder()
    trainer = Trainer(tiny_config(chess_data, epochs=4, patience=2), [recorder])
    trainer.best_fitness = 2.0  # above any reachable fitness (at most 1): no epoch improves on it
    trainer.fit()
    assert trainer.epoch == 2 and [c[1] for c in recorder.calls if c[0] == "epoch"] == [1, 2]
    assert trainer.stop_reason.startswith("no improvement in 2 epochs")
    state = json_round_trip(trainer.state_dict())
    assert state["best_epoch"] == 0  # resumed, it goes on counting from the same best epoch


def test_batch_progress_reaches_callbacks(chess_data):
    from artifactkit.detector.train import Trainer

    class Batches:
        def __init__(self):
            self.seen = []

        def on_batch_end(self, trainer, progress):
            self.seen.append((progress.epoch, progress.batch, progress.batches, progress.images, progress.losses()))

    batches = Batches()
    Trainer(tiny_config(chess_data, epochs=1), [batches]).fit()
    assert [(e, b, n, i) for e, b, n, i, _ in batches.seen] == [(1, b, 4, 4 * b) for b in (1, 2, 3, 4)]
    assert all(set(losses) == {"box", "cls", "dfl"} and losses["cls"] > 0 for *_, losses in batches.seen)
