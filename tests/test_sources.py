"""Local path or Hugging Face Hub id: one rule (loading.is_local_source) for models, WIDER FACE and datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceerase.engines.hf_datasets import DatasetError, load_source
from faceerase.model.loading import ModelLoadError, is_local_source, load_model
from faceerase.training.widerface import load_wider_face

# Names only a path can be (a Hub id is "name" or "owner/name"), none of which exists.
PATH_ONLY = ["./nowhere", "../nowhere", "/nowhere/at/all", "~/nowhere-faceerase", "nowhere/", "a/b/c", "\\nowhere"]


@pytest.mark.parametrize("name", PATH_ONLY)
def test_names_only_a_path_can_be_are_missing_folders_everywhere(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_local_source(name)
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_model(name)
    with pytest.raises(FileNotFoundError, match="WIDER FACE folder not found"):
        load_wider_face(name)
    with pytest.raises(DatasetError, match="no such folder"):
        load_source(name)


def test_hub_ids_unless_a_path_exists_or_is_given_as_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_local_source("owner/name") and not is_local_source("name")
    assert is_local_source(Path("owner/name"))  # a Path is always meant as one
    (tmp_path / "owner" / "name").mkdir(parents=True)
    assert is_local_source("owner/name")  # an existing folder wins over the Hub id it looks like
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model("owner/name")
