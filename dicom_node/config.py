"""Node configuration: pydantic models validated from YAML.

Why: one typed object is passed everywhere (no settings at import time), and a bad file fails
at start-up with a message naming the offending key, e.g.
``destinations.pacs.port: Input should be a valid integer``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from dicom_node.rule_models import Match, Rule  # noqa: F401 - Match re-exported
from pipeline.errors import ConfigError
from pipeline.types import Recipe

logger = logging.getLogger(__name__)

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash, 1..16 chars


def _check_ae(value: str) -> str:
    if not _AE_RE.match(value) or not value.strip():
        raise ValueError("AE title must be 1-16 printable characters without backslash")
    return value.strip()


AETitle = Annotated[str, AfterValidator(_check_ae)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsSettings(_Model):
    """DICOM TLS for our SCP: server certificate, optional client-certificate check."""

    cert: Path  # PEM server certificate (chain)
    key: Path  # PEM private key
    ca: Path | None = None  # PEM CA bundle that signs accepted client certificates
    require_client_cert: bool = False  # True: peers without a certificate from `ca` are refused

    @model_validator(mode="after")
    def _ca_for_clients(self) -> TlsSettings:
        if self.require_client_cert and self.ca is None:
            raise ValueError("require_client_cert needs `ca`")
        return self


class DestinationTls(_Model):
    """DICOM TLS towards a destination: verify its certificate, optionally present ours."""

    ca: Path | None = None  # PEM CA bundle to verify the destination; None = system store
    cert: Path | None = None  # our client certificate, when the destination asks for one
    key: Path | None = None
    check_hostname: bool = True  # the certificate must name `host` (DNS name or IP)


class NodeSettings(_Model):
    """Our own DICOM identity and listening socket."""

    ae_title: AETitle = "VPET"
    host: str = "127.0.0.1"
    port: int = Field(11112, ge=0, le=65535)
    max_pdu: int = Field(262144, ge=0)
    associate_timeout_s: float = Field(30.0, gt=0)  # A-ASSOCIATE-RQ (and TLS) must arrive
    idle_timeout_s: float = Field(60.0, gt=0)  # silent association: aborted
    max_associations: int = Field(32, ge=1)  # more at once: rejected, "local limit exceeded"
    tls: TlsSettings | None = None  # None = plain TCP


class Peer(_Model):
    """A calling AE allowed to associate; `host` optionally pins its IP address."""

    ae_title: AETitle
    host: str | None = None


class Destination(_Model):
    """A remote Storage SCP that receives our results."""

    ae_title: AETitle
    host: str
    port: int = Field(ge=1, le=65535)
    tls: DestinationTls | None = None  # None = plain TCP


class RecipeSettings(_Model):
    """A pipeline recipe; converted to `pipeline.types.Recipe` by `Config.recipe`."""

    modality: Literal["CT", "MR"]
    model: Path | None = None  # package folder; null = shipped demo package
    units: str = "SUVbw"
    lesion_threshold: float = Field(2.5, gt=0)
    min_lesion_volume_ml: float = Field(0.1, ge=0)
    max_lesion_volume_ml: float = Field(100.0, gt=0)  # larger hot regions are organs
    reference_region: Path | None = None  # SUVR: label image (patient coordinates)
    reference_label: int = 1  # label value of the reference region in that image
    organ_mask: Path | None = None  # restrict lesion detection to this mask (nonzero)


def _default_recipes() -> dict[str, RecipeSettings]:
    return {
        "ct-to-pet": RecipeSettings(modality="CT", units="SUVbw"),
        # 1.4 SUVR: the usual amyloid-positive cortical cut-off (whole-cerebellum reference)
        "mr-to-pet": RecipeSettings(modality="MR", units="SUVR", lesion_threshold=1.4),
    }


class StorageSettings(_Model):
    path: Path = Path("./vpet-data")
    min_free_gb: float = Field(1.0, ge=0)  # disk guard: refuse below this much free space
    max_used_percent: float = Field(100.0, gt=0, le=100)  # ... or above this much used


class DatabaseSettings(_Model):
    url: str | None = None  # None: sqlite file under storage.path


class SeriesSettings(_Model):
    timeout_s: float = Field(5.0, gt=0)
    use_count_hints: bool = True  # ImagesInAcquisition, NumberOfFrames, ... finish early
    max_wait_s: float = Field(120.0, gt=0)  # cap when a count hint says instances are missing


class WorkerSettings(_Model):
    count: int = Field(1, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    lease_s: float = Field(600.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    poll_s: float = Field(0.5, gt=0)


class SenderSettings(_Model):
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    calling_ae: str | None = None  # None: node.ae_title
    timeout_s: float = Field(30.0, gt=0)


class MetricsSettings(_Model):
    """Prometheus /metrics and /healthz over HTTP; port 0 = off."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)


class LoggingSettings(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    phi: bool = False  # True allows patient names in logs


class Config(_Model):
    """The whole node configuration."""

    node: NodeSettings = Field(default_factory=NodeSettings)
    allowed_peers: list[Peer] = Field(default_factory=list)
    destinations: dict[str, Destination] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    recipes: dict[str, RecipeSettings] = Field(default_factory=dict)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    series: SeriesSettings = Field(default_factory=SeriesSettings)
    workers: WorkerSettings = Field(default_factory=WorkerSettings)
    sender: SenderSettings = Field(default_factory=SenderSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @model_validator(mode="after")
    def _references(self) -> Config:
        merged = _default_recipes()
        merged.update(self.recipes)
        self.recipes = merged
        errors = _reference_errors(self.model_dump(by_alias=True))
        if errors:
            raise ValueError("\n".join(errors))
        return self

    # -- derived values ------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.storage.path / 'vpet.sqlite3').resolve()}"

    @property
    def incoming_dir(self) -> Path:
        return self.storage.path / "incoming"

    @property
    def outbox_dir(self) -> Path:
        return self.storage.path / "outbox"

    @property
    def sender_calling_ae(self) -> str:
        return self.sender.calling_ae or self.node.ae_title

    def recipe(self, name: str) -> Recipe:
        """The pipeline `Recipe` for a configured recipe name."""
        r = self.recipes[name]
        return Recipe(
            name=name,
            modality=r.modality,
            model=r.model,
            units=r.units,
            lesion_threshold=r.lesion_threshold,
            min_lesion_volume_ml=r.min_lesion_volume_ml,
            max_lesion_volume_ml=r.max_lesion_volume_ml,
            reference_region=r.reference_region,
            reference_label=r.reference_label,
            organ_mask=r.organ_mask,
        )

    @classmethod
    def embedded_defaults(cls, base_dir: Path | str, **overrides: object) -> Config:
        """A self-contained config (SQLite + folders under `base_dir`) for demo and tests."""
        data: dict = {"storage": {"path": str(base_dir)}, "node": {"port": 0}}
        data.update(overrides)
        return cls.model_validate(data)


def _reference_errors(data: dict) -> list[str]:
    """Every rule naming an unknown recipe or destination (works on raw YAML data too)."""
    rules = data.get("rules") if isinstance(data.get("rules"), list) else []
    recipes = set(_default_recipes()) | set(data.get("recipes") or {})
    dests = set(data.get("destinations") or {}) if isinstance(data.get("destinations"),
                                                              dict) else set()
    errors = []
    for i, rule in enumerate(r for r in rules if isinstance(r, dict)):
        recipe = rule.get("recipe")
        if isinstance(recipe, str) and recipe not in recipes:
            errors.append(f"rules.{i}.recipe: unknown recipe {recipe!r}; known: {sorted(recipes)}")
        names = rule.get("destinations") if isinstance(rule.get("destinations"), list) else []
        for name in names:
            if isinstance(name, str) and name not in dests:
                errors.append(f"rules.{i}.destinations: unknown destination {name!r}; "
                              f"known: {sorted(dests)}")
    return errors


def _error_lines(exc: ValidationError, data: dict) -> list[str]:
    """One line per invalid key; reference errors are listed even when fields failed too."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        # model-level validators already name their key in the message
        lines.extend(msg.splitlines() if not loc else [f"{loc}: {msg}"])
    lines.extend(e for e in _reference_errors(data) if e not in lines)
    return lines


def _format_errors(exc: ValidationError, data: dict | None = None) -> str:
    lines = _error_lines(exc, data or {})
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} errors:\n  " + "\n  ".join(lines)


def parse_config(data: object, source: str = "<config>") -> Config:
    """Validate already-loaded YAML data; raise ConfigError naming the offending key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_errors(exc, data)}") from None
    return config


def load_config(path: Path | str) -> Config:
    """Read and validate a YAML config file; relative storage paths resolve against its folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    config = parse_config(data, str(path))
    if not config.storage.path.is_absolute():
        config.storage.path = (path.parent / config.storage.path).resolve()
    for recipe in config.recipes.values():
        for key in ("model", "reference_region", "organ_mask"):
            value = getattr(recipe, key)
            if value is not None and not value.is_absolute():
                setattr(recipe, key, (path.parent / value).resolve())
    for tls in [config.node.tls, *(d.tls for d in config.destinations.values())]:
        for key in ("cert", "key", "ca"):
            value = getattr(tls, key, None)
            if value is not None and not value.is_absolute():
                setattr(tls, key, (path.parent / value).resolve())
    return config


def warn_open_peers(config: Config) -> None:
    """Log once at start-up when any calling AE is accepted."""
    if not config.allowed_peers:
        logger.warning("allowed_peers is empty: accepting associations from any calling AE")
