"""Config keys as ``napari-ssl --config`` reads them: a typo'd key is a warning of its own (and
BiaPy's real keys are never taken for typos), a tuple that YAML's ``{…}`` cut is explained."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from biapy_peer import run_biapy
from napari_ssl.biapy_config import KeyTypoWarning, from_biapy
from napari_ssl.config import ConfigError
from test_biapy_config import TEMPLATE_2D


def test_typo_of_a_missing_key_says_the_default_is_used() -> None:
    data = yaml.safe_load(TEMPLATE_2D)
    data["DATA"]["PACH_SIZE"] = data["DATA"].pop("PATCH_SIZE")
    data["DATA"]["TRAIN"]["GT_PATH"] = "/data/train/y"  # BiaPy's, of other workflows: no typo
    with pytest.warns(UserWarning) as record:
        cfg = from_biapy(data)
    assert [w.category for w in record] == [KeyTypoWarning, UserWarning]
    assert str(record[0].message) == (
        "DATA.PACH_SIZE is not a key: did you mean DATA.PATCH_SIZE? (DATA.PACH_SIZE is ignored; "
        "DATA.PATCH_SIZE takes its default)"
    )
    assert "DATA.TRAIN.GT_PATH" in str(record[1].message)
    assert cfg.data.patch_size == (256, 256)  # the default: a warning, not an error


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        ("{PATH: x, PADDING: (32, 32), OVERLAP: [0, 0]}",
         "DATA.TEST.PADDING: expected a list such as [1, 2] or (1, 2), got '(32': inside {…} YAML "
         "splits a tuple at its commas; write PADDING with square brackets there (PADDING: "
         "[1, 2]), or put PADDING: (1, 2) on a line of its own"),
        ("{PATH: x, OVERLAP: (0.25, 0.25, 0.5)}",  # a repeated value: one key of the pieces
         "DATA.TEST.OVERLAP: expected a list such as [1, 2] or (1, 2), got '(0.25': inside {…} "
         "YAML splits a tuple at its commas; write OVERLAP with square brackets there (OVERLAP: "
         "[1, 2]), or put OVERLAP: (1, 2) on a line of its own"),
    ],
)  # fmt: skip
def test_tuple_cut_by_a_flow_mapping(flow: str, expected: str) -> None:
    data = yaml.safe_load(TEMPLATE_2D)
    data["DATA"].update(yaml.safe_load(f"TEST: {flow}"))  # YAML reads "(32" and "32)": None
    with warnings.catch_warnings(), pytest.raises(ConfigError) as info:
        warnings.simplefilter("ignore", UserWarning)
        from_biapy(data)
    assert str(info.value) == expected


_BIAPY_DEFAULTS = """
import sys, yaml
from biapy.config.config import Config
cfg = Config(sys.argv[1], "job").get_cfg_defaults()
print("RESULT" + yaml.safe_dump(yaml.safe_load(cfg.dump())))
"""


def test_biapy_keys_are_not_taken_for_typos(biapy_python: Path, tmp_path: Path) -> None:
    """Every key of BiaPy 3.7.1's full default config: none is called a typo of ours."""
    stdout = run_biapy(biapy_python, _BIAPY_DEFAULTS, str(tmp_path))
    data = yaml.safe_load(stdout.split("RESULT", 1)[1])
    assert "GT_PATH" in data["DATA"]["TRAIN"]  # and some 580 more keys
    data["PROBLEM"]["TYPE"], data["TRAIN"]["ENABLE"] = "SELF_SUPERVISED", True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from_biapy(data)
    assert [w.category for w in caught if issubclass(w.category, UserWarning)] == [UserWarning]
