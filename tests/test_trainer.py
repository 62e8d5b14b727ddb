"""The shared trainer: exact resume (also after SIGKILL), accumulation, NaN guard, time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffad.errors import TrainingError
from diffad.training import CHECKPOINT, Trainer, TrainerSettings, TrainingSession

SCRIPT = """
import logging, sys, time, torch
from safetensors.torch import save_file
from diffad.methods import build_model, resolve_method
from diffad.runtime import Runtime
from diffad.training import TrainingSession

torch.set_num_threads(1)
logging.basicConfig(level=logging.INFO)
weights_root, folder, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
cfg = {"kind": "latent_inversion", "backbone": "tf_efficientnet_lite0",
       "block_out_channels": [32, 64], "layers_per_block": 1, "epochs": 3, "batch_size": 4,
       "learning_rate": 1e-3, "checkpoint_every": 1}
runtime = Runtime(device=torch.device("cpu"), weights_root=weights_root, image_size=64)
torch.manual_seed(0)
model = build_model(resolve_method("li", cfg), runtime)
data = torch.randn(10, 192, 4, 4, generator=torch.Generator().manual_seed(1))
session = TrainingSession(checkpoint_dir=__import__("pathlib").Path(folder),
                          on_step=lambda step: time.sleep(delay))
loss = model.train_features(data, session)
save_file({k: v.contiguous() for k, v in model.unet.state_dict().items()},
          folder + "/unet.safetensors")
print(len(loss), session.stopwatch.seconds())
"""


def run_script(tmp_path: Path, weights_root: Path, folder: Path, delay: float,
               ) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(weights_root), str(folder),
                             str(delay)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_sigkilled_training_resumes_to_the_same_weights(tmp_path, weights_root):
    from safetensors.torch import load_file

    straight = run_script(tmp_path, weights_root, tmp_path / "straight", 0.0)
    killed = run_script(tmp_path, weights_root, tmp_path / "killed", 0.4)
    checkpoint = tmp_path / "killed" / CHECKPOINT
    deadline = time.time() + 120
    # 3 epochs x 3 steps: kill once a mid-epoch checkpoint (step >= 4) exists.
    while time.time() < deadline:
        if checkpoint.is_file():
            step = torch.load(checkpoint, weights_only=False)["state"]["step"]
            if step >= 4:
                break
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    resumed = run_script(tmp_path, weights_root, tmp_path / "killed", 0.0)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming from" in err
    steps, seconds = out.split()
    assert int(steps) == 9  # the loss curve keeps the steps done before the kill
    assert float(seconds) > 4 * 0.4  # the killed run's time counts
    expected = load_file(str(tmp_path / "straight" / "unet.safetensors"))
    got = load_file(str(tmp_path / "killed" / "unet.safetensors"))
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    assert not checkpoint.exists()


class Stop(Exception):
    pass


def toy_run(folder: Path | None, stop_at: int | None = None, freeze_first=False,
            **settings):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2),
                              torch.nn.Linear(8, 1))
    net[0].requires_grad_(not freeze_first)  # a frozen pretrained part, as under a LoRA
    data = torch.randn(13, 4, generator=torch.Generator().manual_seed(2))

    def loss_fn(batch, generator):
        noise = torch.randn(batch[:, :3].shape, generator=generator)
        return (net(batch[:, :3] + 0.1 * noise)[:, 0] - batch[:, 3]).pow(2).mean()

    def on_step(step):
        if step == stop_at:
            raise Stop

    trainable = [q for q in net.parameters() if q.requires_grad]
    trainer = Trainer({"net": net}, torch.optim.Adam(trainable, lr=0.01),
                      TrainerSettings(**{"epochs": 3, "batch_size": 3, **settings}),
                      torch.device("cpu"), TrainingSession(folder, on_step=on_step),
                      schedule=lambda opt, total: torch.optim.lr_scheduler.LinearLR(
                          opt, 1.0, 0.1, total))
    return net, trainer.fit(data, loss_fn)


@pytest.mark.parametrize("settings", [
    {"checkpoint_every": 1},
    {"checkpoint_every": 2, "grad_accum": 2, "grad_clip": 0.5, "ema_decay": 0.9},
], ids=["plain", "accumulate-clip-ema"])
def test_interrupted_training_resumes_exactly(tmp_path, settings):
    reference, reference_loss = toy_run(None, **settings)
    with pytest.raises(Stop):
        toy_run(tmp_path, stop_at=3, **settings)
    assert (tmp_path / CHECKPOINT).is_file()
    resumed, loss = toy_run(tmp_path, **settings)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert loss["loss"].tolist() == reference_loss["loss"].tolist()
    # 13 samples in micro-batches of 3: 5 per epoch, grouped by grad_accum.
    per_epoch = -(-5 // settings.get("grad_accum", 1))
    assert len(loss) == 3 * per_epoch and loss["step"].tolist() == list(range(1, len(loss) + 1))


def test_a_frozen_part_is_left_out_of_the_checkpoint_and_resumes_exactly(tmp_path):
    reference, reference_loss = toy_run(None, freeze_first=True, checkpoint_every=1)
    with pytest.raises(Stop):
        toy_run(tmp_path, stop_at=3, freeze_first=True, checkpoint_every=1)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=False)["networks"]["net"]
    assert sorted(saved) == ["2.bias", "2.weight"]  # the trainable layer only
    resumed, loss = toy_run(tmp_path, freeze_first=True, checkpoint_every=1)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert loss["loss"].tolist() == reference_loss["loss"].tolist()


def test_checkpoint_of_other_settings_is_ignored(tmp_path):
    with pytest.raises(Stop):
        toy_run(tmp_path, stop_at=2, checkpoint_every=1)
    net, loss = toy_run(tmp_path, epochs=2, checkpoint_every=1)
    fresh, fresh_loss = toy_run(None, epochs=2, checkpoint_every=1)
    assert loss["loss"].tolist() == fresh_loss["loss"].tolist()


def test_nan_loss_names_the_step():
    net = torch.nn.Linear(2, 1)
    trainer = Trainer({"net": net}, torch.optim.SGD(net.parameters(), lr=0.1),
                      TrainerSettings(epochs=1, batch_size=2), torch.device("cpu"))
    data = torch.tensor([[1.0, 2.0], [3.0, 4.0], [float("nan"), 0.0]])
    with pytest.raises(TrainingError, match=r"loss is nan at optimizer step [12] \(epoch 1\)"):
        trainer.fit(data, lambda batch, g: net(batch).mean())


def test_loader_workers_never_exceed_the_jobs_cpus():
    from diffad.runtime import job_cpus, make_runtime

    runtime = make_runtime({"device": "cpu", "num_workers": 64}, 32)
    assert runtime.num_workers == job_cpus() - 1  # an 8-CPU config on a 2-CPU job
    assert make_runtime({"device": "cpu"}, 32).num_workers == 0
