"""Routing rules: which recipe and destinations apply to a completed series.

Why: a pure function of the config and the series headers, so rules are testable on their own.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from dicom_node.config import Config, Match, Rule

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesFacts:
    """The header facts rules can look at (from the Series row)."""

    modality: str = ""
    series_description: str = ""
    calling_ae: str = ""
    called_ae: str = ""
    body_part: str = ""


@dataclass(frozen=True)
class RouteDecision:
    rule: str
    recipe: str
    destinations: tuple[str, ...]


def _eq(expected: str | None, actual: str) -> bool:
    return expected is None or expected.strip().upper() == actual.strip().upper()


def matches(match: Match, facts: SeriesFacts) -> bool:
    """Every condition present must hold; strings compare case-insensitively."""
    if match.series_description is not None and not re.search(
        match.series_description, facts.series_description, re.IGNORECASE
    ):
        return False
    return (
        _eq(match.modality, facts.modality)
        and _eq(match.calling_ae, facts.calling_ae)
        and _eq(match.called_ae, facts.called_ae)
        and _eq(match.body_part, facts.body_part)
    )


def route(config: Config, facts: SeriesFacts) -> RouteDecision | None:
    """First matching rule whose recipe accepts the series modality, else None."""
    for rule in config.rules:
        if not matches(rule.match, facts):
            continue
        recipe = config.recipes[rule.recipe]
        if facts.modality and recipe.modality.upper() != facts.modality.upper():
            logger.warning("rule %s matches but recipe %s expects %s, series is %s; skipped",
                           rule.name, rule.recipe, recipe.modality, facts.modality)
            continue
        return _decision(rule)
    return None


def _decision(rule: Rule) -> RouteDecision:
    return RouteDecision(rule.name, rule.recipe, tuple(rule.destinations))
