"""The README's YAML examples load as written (the masking one on top of the crappify one)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from napari_ssl.config import load_yaml

README = Path(__file__).resolve().parents[1] / "README.md"


def _examples() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)


def test_the_readme_yaml_examples_load(tmp_path: Path) -> None:
    crappify, masking = _examples()
    path = tmp_path / "crappify.yaml"
    path.write_text(crappify)
    cfg = load_yaml(path)
    assert cfg.pretext.task == "crappify" and cfg.data.test_padding == (32, 32)
    merged = yaml.safe_load(crappify)
    for section, values in yaml.safe_load(masking).items():
        merged[section].update(values)
    path.write_text(yaml.safe_dump(merged))
    cfg = load_yaml(path)
    assert (cfg.pretext.task, cfg.model.architecture, cfg.model.vit_embed_dim) == (
        "masking", "mae", 384,
    )  # fmt: skip
