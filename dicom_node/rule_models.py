"""Pydantic models of routing rules (the `rules:` section of the config).

Why: kept apart from `config.py` so `rules.py` (the evaluator) and `config.py` (the whole file)
both import them without a cycle. A condition is a mapping of leaf tests that must all hold,
plus the nested combinators `all_of`, `any_of` and `not`.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

StrOrList = str | list[str]


class Range(BaseModel):
    """Inclusive numeric range; either bound may be omitted."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
    return value


class Match(BaseModel):
    """Conditions of a rule: every given test must hold; omitted tests match anything.

    Strings compare case-insensitively; a list means "any of these values".
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    calling_ae: StrOrList | None = None
    called_ae: StrOrList | None = None
    source_address: StrOrList | None = None  # IP address or CIDR network, e.g. 10.0.0.0/8
    modality: StrOrList | None = None
    body_part: StrOrList | None = None
    series_description: str | None = None  # regular expression, searched
    manufacturer: str | None = None  # regular expression, searched
    image_type: StrOrList | None = None  # every listed value must be in (0008,0008)
    slice_count: Range | None = None
    slice_thickness: Range | None = None  # mm, (0018,0050)
    all_of: list[Match] | None = None
    any_of: list[Match] | None = None
    not_: Match | None = Field(None, alias="not")

    @field_validator("series_description", "manufacturer")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _check_regex(value)

    @field_validator("source_address")
    @classmethod
    def _networks(cls, value: StrOrList | None) -> StrOrList | None:
        for item in [value] if isinstance(value, str) else value or []:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {item!r}") from exc
        return value

    @field_validator("any_of", "all_of")
    @classmethod
    def _non_empty(cls, value: list[Match] | None) -> list[Match] | None:
        if value is not None and not value:
            raise ValueError("needs at least one condition")
        return value


class Rule(BaseModel):
    """Route matching series to a recipe and destinations; higher `priority` is tried first."""

    model_config = ConfigDict(extra="forbid")

    name: str
    priority: int = 0
    match: Match = Field(default_factory=Match)
    recipe: str
    destinations: list[str] = Field(default_factory=list)


Match.model_rebuild()
