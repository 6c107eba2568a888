"""The README documents every setting (the one settings object and its docs stay in step)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from vms.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel), section
        for name in model.model_fields:
            env = f"VMS_{section}__{name}".upper()
            if f"`{env}`" not in text:
                missing.append(env)
    assert missing == [], f"settings missing from README.md: {missing}"


def test_readme_names_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
