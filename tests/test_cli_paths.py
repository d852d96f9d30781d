"""Where the ``napari-ssl`` command writes, and what it says when it cannot: an output folder
that is a file, an export onto its own checkpoint, a failed job's folders, a config that is not
one, a test-only run without a checkpoint, a run without validation data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_ssl.engine.setup import NO_VALIDATION
from test_cli import files_under, one_epoch_job, run_cli, set_keys, write_dataset, write_yaml
from test_training import one_thread  # noqa: F401  (shared fixture)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, sem_2d: np.ndarray) -> Path:
    """The job folder of a one-epoch 2D crappify CLI run (name 'p', run 1)."""
    return one_epoch_job(tmp_path_factory.mktemp("paths"), sem_2d, "p")


def _one_paragraph(err: str) -> str:
    """The error line of ``err`` (after any config warnings), checked to hold no traceback."""
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("below", ["", "deeper"])
def test_result_dir_that_is_a_file(run: Path, tmp_path: Path, below: str) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    config = run.parent.parent / "cfg.yaml"
    ran = run_cli("--config", config, "--result_dir", a_file / below, "--name", "x")
    line = _one_paragraph(ran.err)
    assert ran.code == 2 and line.startswith(f"napari-ssl: --result_dir {a_file / below}")
    assert "is not a folder" in line and "Nothing was written" in line
    assert a_file.read_text() == "mine" and sorted(tmp_path.iterdir()) == [a_file]


def test_a_file_named_as_the_job_folder_names_the_job_folder(run: Path, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("mine")  # <result_dir>/<name> is a file
    config = run.parent.parent / "cfg.yaml"
    ran = run_cli("--config", config, "--result_dir", tmp_path, "--name", "x")
    line = _one_paragraph(ran.err)
    assert ran.code == 2
    assert line.startswith(f"napari-ssl: the job folder (--result_dir/--name) {tmp_path / 'x'}")


@pytest.mark.parametrize("command", ["predict", "export"])
def test_output_that_is_a_file(run: Path, tmp_path: Path, command: str) -> None:
    a_file = tmp_path / "x.tif"
    a_file.write_bytes(b"mine")
    best = run / "checkpoints" / "p_1-checkpoint-best.pth"
    inputs = ["--input", run.parent.parent / "data" / "test" / "x"] if command == "predict" else []
    for output in (a_file, a_file / "sub"):
        ran = run_cli(command, "--checkpoint", best, *inputs, "--output", output)
        line = _one_paragraph(ran.err)
        assert ran.code == 1 and f"--output {output} is not a folder" in line
    assert a_file.read_bytes() == b"mine" and sorted(tmp_path.iterdir()) == [a_file]


def test_export_never_overwrites_the_checkpoint_it_reads(run: Path) -> None:
    """Exporting a -last.pth into its own folder under its own name would drop its optimizer
    state (the run could no longer be resumed): refused, nothing written."""
    checkpoints = run / "checkpoints"
    last = checkpoints / "p_1-checkpoint-last.pth"
    before = {path: path.read_bytes() for path in files_under(checkpoints)}
    ran = run_cli("export", "--checkpoint", last, "--output", checkpoints)
    line = _one_paragraph(ran.err)
    assert ran.code == 1 and "would overwrite the checkpoint being exported" in line
    assert {path: path.read_bytes() for path in files_under(checkpoints)} == before


def test_export_again_says_it_replaces(run: Path, tmp_path: Path) -> None:
    best = run / "checkpoints" / "p_1-checkpoint-best.pth"
    assert run_cli("export", "--checkpoint", best, "--output", tmp_path).code == 0
    again = run_cli("export", "--checkpoint", best, "--output", tmp_path)
    assert again.code == 0 and f"replacing 3 existing file(s) in {tmp_path}" in again.out


def test_failed_job_leaves_no_empty_folders(run: Path, tmp_path: Path) -> None:
    """A fine-tune from a checkpoint of another architecture fails after the run's folders are
    made: they are removed again (and do not count as a used --run_id)."""
    best = run / "checkpoints" / "p_1-checkpoint-best.pth"
    config = write_yaml(
        tmp_path / "ft.yaml", run.parent.parent / "data", arch="resunet", load=True,
        checkpoint=best, epochs=1,
    )  # fmt: skip
    fresh = run_cli("--config", config, "--result_dir", tmp_path / "new", "--name", "f")
    line = _one_paragraph(fresh.err)
    assert fresh.code == 1 and "'p_1-checkpoint-best.pth' does not fit this model: the " in line
    assert "differ in MODEL.ARCHITECTURE: checkpoint 'unet', config 'resunet'. Use the" in line
    assert "missing:" not in line  # the cause, not the state dict's keys
    assert not (tmp_path / "new").exists()
    ran = run_cli("--config", config, "--result_dir", run.parent, "--name", "p", "--run_id", 7)
    assert ran.code == 1 and not (run / "results" / "p_7").exists()
    assert (run / "results" / "p_1" / "test_results_metrics.csv").is_file()


def test_config_that_is_not_a_yaml_file(run: Path, tmp_path: Path) -> None:
    image = run.parent.parent / "data" / "test" / "x" / "t.tif"
    folder = run_cli("--config", tmp_path, "--result_dir", tmp_path / "o")
    assert folder.code == 2 and "is a folder, not a config file" in _one_paragraph(folder.err)
    binary = run_cli("--config", image, "--result_dir", tmp_path / "o")
    assert binary.code == 2 and f"{image} is not a text file" in _one_paragraph(binary.err)
    assert sorted(tmp_path.iterdir()) == []
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    ran = run_cli("--config", empty, "--result_dir", tmp_path / "o")
    assert ran.code == 2 and f"{empty} is empty: give a napari-ssl or BiaPy" in ran.err


def test_missing_problem_type_is_named(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("PROBLEM:\n  NDIM: 2D\nDATA:\n  PATCH_SIZE: (64, 64, 1)\n")
    ran = run_cli("--config", config, "--result_dir", tmp_path / "o")
    line = _one_paragraph(ran.err)
    assert ran.code == 2 and "got no PROBLEM.TYPE (BiaPy's default: 'SEMANTIC_SEG')" in line


def test_test_only_run_without_checkpoint_names_where_it_looked(run: Path) -> None:
    config = set_keys(
        write_yaml(run.parent.parent / "test_only.yaml", run.parent.parent / "data"),
        {"TRAIN.ENABLE": False, "MODEL.LOAD_CHECKPOINT": True},
    )
    ran = run_cli("--config", config, "--result_dir", run.parent, "--name", "p", "--run_id", 2)
    line = _one_paragraph(ran.err)
    assert ran.code == 1 and "p_2-checkpoint-best.pth or -last.pth" in line
    assert "--name and --run_id of the run that trained" in line


def test_no_validation_is_said(run: Path, tmp_path: Path) -> None:
    """SPLIT_TRAIN 0 (BiaPy refuses it): training runs, and says its 'val loss' is the
    training loss."""
    config = set_keys(
        write_yaml(tmp_path / "c.yaml", run.parent.parent / "data", epochs=1),
        {"DATA.VAL.SPLIT_TRAIN": 0},
    )
    ran = run_cli("--config", config, "--result_dir", tmp_path / "o", "--name", "n")
    assert ran.code == 0, ran.err
    assert f"note: {NO_VALIDATION}" in ran.out


def test_test_images_sharing_a_name_are_refused_before_training(
    run: Path, tmp_path: Path, sem_2d: np.ndarray
) -> None:
    """t.tif and t.npy in DATA.TEST.PATH would both write per_image/t.tif: refused at once."""
    data = write_dataset(tmp_path / "data", sem_2d)
    np.save(data / "test" / "x" / "t.npy", sem_2d[:64, :64])
    config = write_yaml(tmp_path / "c.yaml", data, epochs=1)
    ran = run_cli("--config", config, "--result_dir", tmp_path / "o", "--name", "d")
    line = _one_paragraph(ran.err)
    assert ran.code == 1 and "test images t.npy, t.tif in" in line
    assert "share the name 't'" in line and "training" not in ran.out
    assert not (tmp_path / "o").exists()


def test_a_section_given_twice_is_warned_before_the_error(run: Path, tmp_path: Path) -> None:
    """A second DATA block replaces the first (YAML keeps the last, BiaPy says nothing): the
    warning comes out even when the config is then refused."""
    config = write_yaml(tmp_path / "c.yaml", run.parent.parent / "data")
    with config.open("a") as f:
        f.write("DATA:\n  NORMALIZATION:\n    TYPE: custom\n")
    ran = run_cli("--config", config, "--result_dir", tmp_path / "o")
    first = ran.err.splitlines()[0]
    assert first == (
        f"warning: {config}: DATA is given twice: only its last value is read (YAML keeps the "
        "last; BiaPy does the same, silently). Merge the two into one."
    )
    assert ran.code == 2 and "got 'custom'" in _one_paragraph(ran.err)
    assert sorted(tmp_path.iterdir()) == [config]
