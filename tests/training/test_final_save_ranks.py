"""The final save under several processes: every rank takes part, only the main process touches the files."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from dsft.training.run import save_final_weights


def _trainer(should_save: bool, events: list[str]) -> SimpleNamespace:
    return SimpleNamespace(
        args=SimpleNamespace(should_save=should_save),
        save_model=lambda path: events.append("save_model"),
        accelerator=SimpleNamespace(wait_for_everyone=lambda: events.append("barrier")),
    )


def test_a_late_rank_leaves_the_main_processs_staging_directory_alone(tmp_path: Path) -> None:
    """A two-process DDP full fine-tune failed at its final save ("No such file or directory"): the second rank
    reached save_final_weights while the main process was writing .final.staging and removed it as a killed
    save's leftovers."""
    staging = tmp_path / ".final.staging"
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"being written by the main process")
    events: list[str] = []
    save_final_weights(_trainer(False, events), None, None, SimpleNamespace(path=tmp_path, checkpoints=lambda: []))
    assert (staging / "model.safetensors").is_file()
    assert events == ["barrier", "save_model", "barrier"]


def test_the_main_process_clears_leftovers_before_any_rank_saves(tmp_path: Path) -> None:
    staging = tmp_path / ".final.staging"
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"a killed save's leftovers")
    events: list[str] = []
    trainer = _trainer(True, events)
    trainer.save_model = lambda path: events.append(f"save_model, leftovers: {Path(path).exists()}") or Path(path).mkdir()
    tokenizer = SimpleNamespace(save_pretrained=lambda path: None)
    final = save_final_weights(trainer, tokenizer, SimpleNamespace(chat_template="t"),
                               SimpleNamespace(path=tmp_path, checkpoints=lambda: []))
    assert events == ["barrier", "save_model, leftovers: False", "barrier"]
    assert final.is_dir() and not staging.exists()
