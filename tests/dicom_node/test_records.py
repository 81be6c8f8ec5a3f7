"""record_instance (SQLAlchemy Core): counts, re-sends, moved instances, re-opened versions."""

from __future__ import annotations

from sqlalchemy import select, update

from dicom_node.db import Database, Instance, Series
from dicom_node.records import ReceivedInstance, record_instance


def _item(sop: str, series: str = "1.2.3", path: str = "/p") -> ReceivedInstance:
    return ReceivedInstance(sop, series, "1.2", "1.2.840.10008.5.1.4.1.1.2", path, "SCU", "VPET",
                            "127.0.0.1/k", modality="CT", description="d")


def _series(db: Database, uid: str) -> Series:
    with db.session() as s:
        return s.scalars(select(Series).where(Series.series_uid == uid)).one()


def test_counts_resends_and_versions(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.upgrade()
    assert record_instance(db, _item("1.2.3.1")) == 1
    assert record_instance(db, _item("1.2.3.2")) == 1
    assert record_instance(db, _item("1.2.3.1", path="/new")) == 1  # re-send: not counted twice
    series = _series(db, "1.2.3")
    assert (series.instance_count, series.modality, series.state) == (2, "CT", "receiving")
    with db.session() as s:
        assert s.scalar(select(Instance.path).where(Instance.sop_instance_uid == "1.2.3.1")) \
            == "/new"
        s.execute(update(Series).values(state="complete", rule="r"))
    assert record_instance(db, _item("1.2.3.3")) == 2  # late instance re-opens as version 2
    series = _series(db, "1.2.3")
    assert (series.version, series.state, series.rule, series.instance_count) == \
        (2, "receiving", None, 3)
    assert record_instance(db, _item("1.2.3.3", series="1.2.4")) == 1  # moved to a new series
    assert _series(db, "1.2.4").instance_count == 1
    db.dispose()
