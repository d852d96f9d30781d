"""What the ``napari-ssl`` command says when something is wrong: each error once, on stderr, in
terms of what the user typed (option or config key), with the fix; notes and near-miss keys
where they are seen; ``--help`` and ``--version``."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_ssl import __version__
from napari_ssl.cli import main, replaced_run_note
from napari_ssl.config import Config
from napari_ssl.data.folders import dataset_folder
from napari_ssl.data.images import DataError
from napari_ssl.engine.checkpoints import load_trained
from napari_ssl.results import ResultsLayout
from test_cli import Ran, files_under, one_epoch_job, run_cli, write_dataset, write_yaml
from test_training import no_charts, one_thread  # noqa: F401  (shared fixtures)

SRC = Path(__file__).resolve().parents[1] / "src"


def run_to_exit(*args: object) -> Ran:
    """``napari-ssl ARGS`` for commands that stop with SystemExit (argparse, ``--gpu``): the
    exit code and output as from a shell (a message given to SystemExit goes to stderr, code 1)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, sem_2d: np.ndarray) -> Path:
    """A 2D crappify checkpoint from a one-epoch CLI job."""
    job = one_epoch_job(tmp_path_factory.mktemp("msg"), sem_2d, "m")
    return job / "checkpoints" / "m_1-checkpoint-best.pth"


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


# ----- 1. a job error is printed once, on stderr, with exit code 1


def test_job_error_is_printed_once(tmp_path: Path, sem_2d: np.ndarray) -> None:
    data = write_dataset(tmp_path / "data", sem_2d)
    for image in (data / "train" / "x").iterdir():
        image.unlink()
    ran = run_cli("--config", write_yaml(tmp_path / "cfg.yaml", data), "--result_dir",
                  tmp_path / "out")  # fmt: skip
    expected = (
        f"napari-ssl: no images in '{data / 'train' / 'x'}' (looked for .tif, .tiff, .png, .npy, "
        ".zarr). Point DATA.TRAIN.PATH to the folder with the images, e.g. "
        "dataset/{train,val,test}/x.\n"
    )
    assert (ran.code, ran.out, ran.err) == (1, "", expected)


@pytest.mark.usefixtures("no_cuda")
def test_gpu_without_cuda_says_omit_gpu(tmp_path: Path, sem_2d: np.ndarray) -> None:
    config = write_yaml(tmp_path / "cfg.yaml", write_dataset(tmp_path / "data", sem_2d))
    expected = (
        "napari-ssl: --gpu 0: no CUDA GPU is available on this machine; omit --gpu to run on "
        "the CPU.\n"
    )
    ran = run_to_exit("--config", config, "--result_dir", tmp_path / "out", "--gpu", 0)
    assert ran == Ran(1, "", expected)
    assert files_under(tmp_path / "out") == []


def test_gpu_without_cuda_exit_code_from_a_shell(tmp_path: Path) -> None:
    """The real command: SystemExit's message on stderr once, exit code 1, nothing on stdout."""
    if sys.platform == "darwin":
        pytest.skip("Apple MPS may be there: the message names it")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "napari_ssl", "demo", "--result_dir", str(tmp_path / "d"),
           "--gpu", "0"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    expected = (
        "napari-ssl: --gpu 0: no CUDA GPU is available on this machine; omit --gpu to run on "
        "the CPU.\n"
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", expected)
    assert files_under(tmp_path / "d") == []  # checked before the demo data is written


def test_demo_epochs_zero_writes_nothing(tmp_path: Path) -> None:
    ran = run_to_exit("demo", "--result_dir", tmp_path / "d", "--epochs", 0)
    assert ran.code == 2 and ran.out == ""
    assert ran.err.splitlines()[-1] == "napari-ssl demo: error: --epochs must be >= 1, got 0"
    assert not (tmp_path / "d").exists()


# ----- 2. predict / export name their options and the checkpoint


def test_predict_input_not_found(trained: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ran = run_cli("predict", "--checkpoint", trained, "--input", "nothere", "--output", "p")
    expected = (
        f"napari-ssl predict: --input nothere: file or folder not found (looked for "
        f"{Path.cwd() / 'nothere'}).\n"
    )
    assert (ran.code, ran.out, ran.err) == (1, "", expected)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("command", ["predict", "export"])
def test_missing_checkpoint_names_the_option(command: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    inputs = ["--input", "."] if command == "predict" else []
    ran = run_cli(command, "--checkpoint", "none.pth", *inputs, "--output", "o")
    expected = (
        f"napari-ssl {command}: --checkpoint none.pth: file not found (looked for "
        f"{Path.cwd() / 'none.pth'}).\n"
    )
    assert (ran.code, ran.out, ran.err) == (1, "", expected)


def test_predict_empty_folder_names_input(trained: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    ran = run_cli("predict", "--checkpoint", trained, "--input", tmp_path / "empty",
                  "--output", tmp_path / "p")  # fmt: skip
    expected = (
        f"napari-ssl predict: no images in '{tmp_path / 'empty'}' (looked for .tif, .tiff, .png, "
        ".npy, .zarr). Point --input to the folder with the images, e.g. "
        "dataset/{train,val,test}/x.\n"
    )
    assert (ran.code, ran.out, ran.err) == (1, "", expected)


def test_predict_3d_input_into_a_2d_model(
    trained: Path, tmp_path: Path, nuclei_3d: np.ndarray
) -> None:
    tifffile.imwrite(tmp_path / "stack.tif", nuclei_3d[:5, :64, :64])
    np.save(tmp_path / "stack.npy", nuclei_3d[:5, :64, :64])
    messages = {}
    for name in ("stack.tif", "stack.npy"):
        ran = run_cli("predict", "--checkpoint", trained, "--input", tmp_path / name,
                      "--output", tmp_path / "p")  # fmt: skip
        assert ran.code == 1 and ran.out == ""
        messages[name] = ran.err
    assert messages["stack.tif"] == (
        "napari-ssl predict: 'stack.tif' is a 3D stack (shape (5, 64, 64)) but the "
        "checkpoint's model is 2D: give 2D images, or a checkpoint trained in 3D.\n"
    )
    assert messages["stack.npy"] == (
        "napari-ssl predict: 'stack.npy' (shape (5, 64, 64)) has 64 channel(s) but the "
        "checkpoint's model takes 1 (a 3D stack? the checkpoint's model is 2D: use a checkpoint "
        "trained in 3D).\n"
    )
    assert not (tmp_path / "p").exists()


@pytest.mark.usefixtures("no_cuda")
def test_predict_gpu_without_cuda(trained: Path, tmp_path: Path) -> None:
    ran = run_to_exit("predict", "--checkpoint", trained, "--input", tmp_path, "--output",
                      tmp_path / "p", "--gpu", 0)  # fmt: skip
    expected = (
        "napari-ssl: --gpu 0: no CUDA GPU is available on this machine; omit --gpu to run on "
        "the CPU.\n"
    )
    assert ran == Ran(1, "", expected)


def test_predict_overlap_out_of_range(trained: Path, tmp_path: Path) -> None:
    ran = run_to_exit("predict", "--checkpoint", trained, "--input", tmp_path, "--output",
                      tmp_path / "p", "--overlap", 1)  # fmt: skip
    assert ran.code == 2
    assert (
        ran.err.splitlines()[-1]
        == "napari-ssl predict: error: --overlap must be in [0, 1), got 1.0"
    )


# ----- 3. re-running an existing run


def _layout_with_checkpoint(tmp_path: Path, run_id: str = "1") -> ResultsLayout:
    layout = ResultsLayout(tmp_path / "out", "job", run_id)
    layout.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    layout.last_checkpoint.write_bytes(b"")
    return layout


def test_rerun_note_end_to_end(tmp_path: Path, sem_2d: np.ndarray) -> None:
    layout = _layout_with_checkpoint(tmp_path)
    config = write_yaml(tmp_path / "cfg.yaml", write_dataset(tmp_path / "data", sem_2d), epochs=1)
    ran = run_cli("--config", config, "--result_dir", layout.result_dir, "--name", "job")
    assert ran.code == 0, ran.out + ran.err
    assert ran.err == (
        f"note: run job_1 exists in {layout.root}: this run writes over its checkpoints and "
        "results as it trains; use --run_id 2 for a new run or --resume to continue it\n"
    )
    assert layout.last_checkpoint.stat().st_size > 0  # replaced, as BiaPy does


def test_rerun_note_only_when_a_run_is_replaced(tmp_path: Path) -> None:
    layout = _layout_with_checkpoint(tmp_path)
    cfg = Config()
    note = replaced_run_note(cfg, layout, resume=False)
    assert note is not None and "use --run_id 2 for a new run" in note
    (layout.root / "results" / "job_2").mkdir(parents=True)  # run 2 has results: suggest 3
    assert "use --run_id 3 for a new run" in str(replaced_run_note(cfg, layout, resume=False))
    named = _layout_with_checkpoint(tmp_path, "first")
    assert "use --run_id N for a new run" in str(replaced_run_note(cfg, named, resume=False))
    assert replaced_run_note(cfg, layout, resume=True) is None
    assert replaced_run_note(cfg, ResultsLayout(tmp_path / "out", "job", "7"), resume=False) is None
    test_only = replace(cfg, train=replace(cfg.train, enable=False))
    assert replaced_run_note(test_only, layout, resume=False) is None
    for own in ("", str(layout.last_checkpoint)):  # continue / fine-tune this run
        again = replace(cfg, model=replace(cfg.model, load_checkpoint=True, checkpoint_file=own))
        assert replaced_run_note(again, layout, resume=False) is None
    other = replace(cfg, model=replace(cfg.model, load_checkpoint=True, checkpoint_file="b.pth"))
    assert replaced_run_note(other, layout, resume=False) is not None


# ----- 4. relative data paths


def test_relative_train_path_found_next_to_the_config(
    tmp_path: Path, sem_2d: np.ndarray, monkeypatch
) -> None:
    project = tmp_path / "project"
    write_dataset(project / "data", sem_2d)
    config = write_yaml(project / "cfg.yaml", Path("data"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    ran = run_cli("--config", config, "--result_dir", tmp_path / "out")
    tried = Path.cwd() / "data" / "train" / "x"
    expected = (
        f"napari-ssl: folder not found: '{tried}'. Check DATA.TRAIN.PATH. It is found next to "
        f"the config, at '{project / 'data' / 'train' / 'x'}': run from {project} or give an "
        "absolute path (a relative path is read from the current folder, as in BiaPy).\n"
    )
    assert (ran.code, ran.out, ran.err) == (1, "", expected)
    assert files_under(tmp_path / "out") == []


def test_a_run_on_relative_paths_keeps_them_from_the_root(
    tmp_path: Path, sem_2d: np.ndarray, monkeypatch
) -> None:
    """Read from the current folder as in BiaPy, the data folders are kept absolute in the
    checkpoint, so that its export runs from anywhere (not only from where it trained)."""
    project = tmp_path / "project"
    write_dataset(project / "data", sem_2d)
    monkeypatch.chdir(project)
    config = write_yaml(project / "cfg.yaml", Path("data"), epochs=1)
    ran = run_cli("--config", config, "--result_dir", tmp_path / "out", "--name", "rel")
    assert ran.code == 0, ran.err
    best = tmp_path / "out" / "rel" / "checkpoints" / "rel_1-checkpoint-best.pth"
    data = load_trained(best).cfg.data
    assert (data.train_path, data.test_path) == (
        str(project / "data" / "train" / "x"), str(project / "data" / "test" / "x"))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    exported = run_cli("export", "--checkpoint", best, "--output", tmp_path / "exp")
    assert exported.code == 0, exported.err
    yaml_text = next((tmp_path / "exp").glob("*.yaml")).read_text()
    assert str(project / "data" / "train" / "x") in yaml_text


def test_dataset_folder_reads_relative_paths_from_the_current_folder(
    tmp_path: Path, monkeypatch
) -> None:
    for root in (tmp_path, tmp_path / "cfg"):
        (root / "data" / "test" / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert dataset_folder("data", "test", tmp_path / "cfg") == Path("data/test/x")  # as BiaPy
    with pytest.raises(DataError) as info:
        dataset_folder("nowhere/x", "val", tmp_path / "cfg")
    assert str(info.value) == (
        f"folder not found: '{Path.cwd() / 'nowhere' / 'x'}'. Check data.val_path (BiaPy "
        "DATA.VAL.PATH). (A relative path is read from the current folder, as in BiaPy.)"
    )
    with pytest.raises(DataError) as info:
        dataset_folder(str(tmp_path / "gone"), "test")
    assert str(info.value) == f"folder not found: '{tmp_path / 'gone'}'. Check DATA.TEST.PATH."


# ----- 5. and 6. the config file: a tuple cut by {…}, a typo'd key


def test_flow_mapping_tuple_hint(tmp_path: Path, sem_2d: np.ndarray) -> None:
    data = write_dataset(tmp_path / "data", sem_2d)
    config = write_yaml(tmp_path / "cfg.yaml", data)
    text = config.read_text().replace(
        f"  TEST:\n    PATH: {data / 'test' / 'x'}\n",
        f"  TEST: {{PATH: {data / 'test' / 'x'}, PADDING: (4, 4), OVERLAP: (0.25, 0.25)}}\n",
    )
    assert text != config.read_text()
    config.write_text(text)
    ran = run_cli("--config", config, "--result_dir", tmp_path / "out")
    expected = (
        "napari-ssl: DATA.TEST.PADDING: expected a list such as [1, 2] or (1, 2), got '(4': "
        "inside {…} YAML splits a tuple at its commas; write PADDING with square brackets there "
        "(PADDING: [1, 2]), or put PADDING: (1, 2) on a line of its own\n"
    )
    assert (ran.code, ran.out, ran.err) == (2, "", expected)
    assert files_under(tmp_path / "out") == []


def test_typo_key_is_the_first_warning(tmp_path: Path, sem_2d: np.ndarray) -> None:
    config = write_yaml(tmp_path / "cfg.yaml", write_dataset(tmp_path / "data", sem_2d), epochs=1)
    config.write_text(config.read_text().replace("PATIENCE: 20", "PATEINCE: 20"))
    with config.open("a") as f:
        f.write("LOG:\n  LOG_DIR: /tmp/logs\n")  # a BiaPy key we do not use
    ran = run_cli("--config", config, "--result_dir", tmp_path / "out")
    assert ran.code == 0, ran.out + ran.err
    lines = ran.err.splitlines()
    assert lines[0] == (
        "warning: TRAIN.PATEINCE is not a key: did you mean TRAIN.PATIENCE? (TRAIN.PATEINCE is "
        "ignored; TRAIN.PATIENCE takes its default)"
    )
    assert lines[1] == f"warning: {config}: napari-ssl reads BiaPy keys with these differences."
    assert lines[2:] == ["Not used by napari-ssl, or not known: LOG.LOG_DIR."]


# ----- 7. --help and --version


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"napari-ssl {__version__}\n"


@pytest.mark.parametrize(
    ("command", "phrases"),
    [
        ("demo", ["pretext task: crappify", "default: crappify", "training epochs, >= 1",
                  "(default: 4)", "GPU index, e.g. 0 (default: auto)"]),
        ("predict", ["a .pth or .safetensors checkpoint", "GPU index, e.g. 0 (default: auto)",
                     "tile overlap, a fraction in [0, 1) (default: the checkpoint's",
                     "DATA.TEST.OVERLAP"]),
    ],
)  # fmt: skip
def test_help_texts(command: str, phrases: list[str], capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one line per option: phrases are not wrapped
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for phrase in phrases:
        assert phrase in out, out


def test_ctrl_c_stops_training_resumably(tmp_path: Path, sem_2d: np.ndarray) -> None:
    """The first Ctrl-C in a shell stops after the step, saves the resumable last checkpoint
    and says how to resume; no traceback, no test step."""
    import signal

    config = write_yaml(tmp_path / "cfg.yaml", write_dataset(tmp_path / "data", sem_2d), epochs=500)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "napari_ssl", "--config", str(config), "--result_dir", str(out),
           "--name", "job"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:  # the first epoch's line: training is under way
        lines.append(line)
        if line.startswith("epoch 1:"):
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=120)
    stdout = "".join(lines) + rest
    layout = ResultsLayout(out, "job", 1)
    assert proc.returncode == 1, stdout + err
    assert f"; resume from {layout.last_checkpoint}" in stdout
    assert err == (
        "\nstopping after this step (Ctrl-C again to quit at once)\n"
        "napari-ssl: interrupted (Ctrl-C): training stopped and saved, no test step\n"
    )
    state = torch.load(layout.last_checkpoint, weights_only=False)["train_state"]
    assert state["epoch"] >= 1 and not list(layout.per_image_dir.glob("*"))  # no test step


def test_rerunning_a_finished_run_with_load_checkpoint_tests_it(
    tmp_path: Path, sem_2d: np.ndarray
) -> None:
    """BiaPy's re-test of a finished train+test YAML (MODEL.LOAD_CHECKPOINT, no file): nothing is
    left to train, so the job says so and goes on to the test (``--resume`` would refuse)."""
    data = write_dataset(tmp_path / "data", sem_2d)
    args = ("--result_dir", tmp_path / "out", "--name", "job")
    first = run_cli("--config", write_yaml(tmp_path / "a.yaml", data, epochs=1), *args)
    assert first.code == 0, first.err
    metrics = ResultsLayout(tmp_path / "out", "job", 1).run_dir / "test_results_metrics.csv"
    metrics.unlink()
    again = run_cli("--config", write_yaml(tmp_path / "b.yaml", data, epochs=1, load=True), *args)
    assert again.code == 0, again.err
    assert "has trained 1 epoch already (train.epochs 1): nothing left to train" in again.out
    assert "testing 1 image(s)" in again.out and metrics.is_file()
    refused = run_cli("--config", tmp_path / "a.yaml", *args, "--resume")
    assert refused.code == 1 and "to continue it, raise train.epochs" in refused.err
