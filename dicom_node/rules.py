"""Routing rules: which recipe and destinations apply to a completed series.

Why: a pure function of the config and the series facts, so rules are testable on their own
and `vpet rules test` can say, for every rule that did not match, the first condition that
failed, in words. Rules are tried by `priority` (higher first), ties in file order.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from dicom_node.config import Config
from dicom_node.rule_models import Match, Range, Rule

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesFacts:
    """The facts rules can look at: series headers plus who sent it and from where."""

    modality: str = ""
    series_description: str = ""
    calling_ae: str = ""
    called_ae: str = ""
    body_part: str = ""
    source_address: str = ""
    manufacturer: str = ""
    image_type: tuple[str, ...] = field(default_factory=tuple)
    slice_count: int = 0
    slice_thickness: float | None = None


@dataclass(frozen=True)
class RouteDecision:
    rule: str
    recipe: str
    destinations: tuple[str, ...]


def _values(expected: str | list[str]) -> list[str]:
    return [expected] if isinstance(expected, str) else list(expected)


def _one_of(label: str, expected: str | list[str] | None, actual: str) -> str | None:
    if expected is None:
        return None
    wanted = _values(expected)
    if actual.strip().upper() in {w.strip().upper() for w in wanted}:
        return None
    shown = wanted[0] if len(wanted) == 1 else f"one of {', '.join(wanted)}"
    return f"{label} is {actual.strip() or '(empty)'!r}, rule wants {shown}"


def _regex(label: str, pattern: str | None, actual: str) -> str | None:
    if pattern is None or re.search(pattern, actual, re.IGNORECASE):
        return None
    return f"{label} {actual!r} does not match /{pattern}/"


def _address(expected: str | list[str] | None, actual: str) -> str | None:
    if expected is None:
        return None
    try:
        ip = ipaddress.ip_address(actual)
    except ValueError:
        return f"source address {actual or '(unknown)'!r} is not an IP address"
    nets = _values(expected)
    if any(ip in ipaddress.ip_network(n, strict=False) for n in nets):
        return None
    return f"source address {actual} is not in {', '.join(nets)}"


def _range(label: str, rng: Range | None, actual: float | None, unit: str = "") -> str | None:
    if rng is None:
        return None
    if actual is None:
        return f"{label} is unknown, rule wants a range"
    if rng.min is not None and actual < rng.min:
        return f"{label} {actual:g}{unit} is below {rng.min:g}{unit}"
    if rng.max is not None and actual > rng.max:
        return f"{label} {actual:g}{unit} is above {rng.max:g}{unit}"
    return None


def _image_type(expected: str | list[str] | None, actual: Sequence[str]) -> str | None:
    if expected is None:
        return None
    have = {v.strip().upper() for v in actual}
    missing = [v for v in _values(expected) if v.strip().upper() not in have]
    if not missing:
        return None
    shown = "\\".join(actual) or "(empty)"
    return f"image type {shown} lacks {', '.join(missing)}"


def explain(match: Match, facts: SeriesFacts) -> str | None:
    """None when `facts` satisfy `match`, else the first failing condition in words."""
    checks = (
        lambda: _one_of("calling AE", match.calling_ae, facts.calling_ae),
        lambda: _one_of("called AE", match.called_ae, facts.called_ae),
        lambda: _address(match.source_address, facts.source_address),
        lambda: _one_of("modality", match.modality, facts.modality),
        lambda: _one_of("body part", match.body_part, facts.body_part),
        lambda: _regex("series description", match.series_description,
                       facts.series_description),
        lambda: _regex("manufacturer", match.manufacturer, facts.manufacturer),
        lambda: _image_type(match.image_type, facts.image_type),
        lambda: _range("slice count", match.slice_count, facts.slice_count),
        lambda: _range("slice thickness", match.slice_thickness, facts.slice_thickness, " mm"),
        lambda: _all_of(match.all_of, facts),
        lambda: _any_of(match.any_of, facts),
        lambda: _not(match.not_, facts),
    )
    for check in checks:
        reason = check()
        if reason is not None:
            return reason
    return None


def _all_of(items: list[Match] | None, facts: SeriesFacts) -> str | None:
    for item in items or []:
        reason = explain(item, facts)
        if reason is not None:
            return reason
    return None


def _any_of(items: list[Match] | None, facts: SeriesFacts) -> str | None:
    if not items:
        return None
    reasons = [explain(item, facts) for item in items]
    if any(r is None for r in reasons):
        return None
    return "none of any_of holds (" + "; ".join(str(r) for r in reasons) + ")"


def _not(item: Match | None, facts: SeriesFacts) -> str | None:
    if item is None or explain(item, facts) is not None:
        return None
    return f"'not' condition holds ({_describe(item)})"


def _describe(match: Match) -> str:
    data = match.model_dump(exclude_none=True, by_alias=True)
    return ", ".join(f"{k}={v}" for k, v in data.items()) or "empty condition"


def matches(match: Match, facts: SeriesFacts) -> bool:
    """Every condition present must hold; strings compare case-insensitively."""
    return explain(match, facts) is None


def ordered_rules(config: Config) -> list[Rule]:
    """Rules in the order they are tried: priority descending, ties in file order."""
    return sorted(config.rules, key=lambda r: -r.priority)  # sorted() is stable


def rule_verdict(config: Config, rule: Rule, facts: SeriesFacts) -> str | None:
    """None when `rule` takes the series, else why not (condition or recipe modality)."""
    reason = explain(rule.match, facts)
    if reason is not None:
        return reason
    recipe = config.recipes[rule.recipe]
    if facts.modality and recipe.modality.upper() != facts.modality.upper():
        return f"recipe {rule.recipe} expects {recipe.modality}, series is {facts.modality}"
    return None


def evaluate(config: Config, facts: SeriesFacts) -> list[tuple[Rule, str | None]]:
    """Every rule in trial order with its verdict (None = it would take the series)."""
    return [(rule, rule_verdict(config, rule, facts)) for rule in ordered_rules(config)]


def route(config: Config, facts: SeriesFacts) -> RouteDecision | None:
    """The first rule (by priority) that takes the series, else None."""
    for rule in ordered_rules(config):
        reason = rule_verdict(config, rule, facts)
        if reason is None:
            return RouteDecision(rule.name, rule.recipe, tuple(rule.destinations))
        if reason.startswith("recipe "):
            logger.warning("rule %s matches but %s; skipped", rule.name, reason)
    return None
